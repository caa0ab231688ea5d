#!/bin/bash
# Installs everything Ferry needs to build, test and demo on Debian 12.
# Safe to run repeatedly; skips apt when every package is already present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  # build
  build-essential pkg-config libudev-dev libgtk-4-dev libadwaita-1-dev gettext
  # the real tools Ferry interoperates with and is tested against
  ostree flatpak bubblewrap gnupg attr e2fsprogs util-linux iproute2 openssl time curl
  # the desktop's mDNS responder, run in the LAN tests' own network namespaces
  avahi-daemon avahi-utils
  python3
  # system integration checks
  udev systemd systemd-journal-remote desktop-file-utils appstream libxml2-utils policykit-1 man-db
  # GUI tests and screenshots
  xvfb xauth x11-utils dbus dbus-x11 dunst imagemagick libnotify-bin at-spi2-core libglib2.0-bin librsvg2-common
  # fonts and icons so screenshots look like a desktop
  fonts-cantarell adwaita-icon-theme
  # drive hook tests and system install: loop devices, mounts, make
  mount make
  # the Debian package and its checks
  debhelper lintian
  # FAT32 and exFAT drives through FUSE for prepare-drive tests
  dosfstools fusefat exfatprogs exfat-fuse
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2; exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# Finds dependencies a crate declares but does not use (scripts/test.sh runs it).
if ! cargo machete --version >/dev/null 2>&1; then
  cargo install --locked cargo-machete
fi
