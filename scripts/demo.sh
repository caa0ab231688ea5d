#!/bin/bash
# Ferry demo. On Debian 12, as root:
#   1. installs what is missing and builds Ferry;
#   2. generates, in a temporary folder, an update drive (EXAMPLE-USB) as `ostree create-usb`
#      and `flatpak create-usb` write it: ExampleOS 2.0, GPG-signed by its vendor, and new
#      versions of two apps, Notes and Weather, with the runtime branch they now need; and a
#      machine at the older versions: a fake sysroot with ExampleOS 1.0 deployed by
#      `ostree admin`, and a per-user Flatpak installation with Notes 1.0 and Weather 3.1;
#   3. records the drive the way the drive hook does when it is plugged in (`ferry-hook`);
#   4. with a display: starts Ferry's agent (`ferry --background`), which shows a notification
#      for the drive, and opens the window. Click Install to install everything and watch it
#      finish; press Enter in the terminal when done;
#      without a display: lists the updates (`ferryctl list`) and installs them with progress
#      bars (`ferryctl install`);
#   5. shows the machine afterwards (`ostree admin status`, `flatpak --user list`).
# The demo folder is kept; the last lines say how to remove it.
# Set DEMO_DIR to choose the folder (it must not exist yet). Set DEMO_HEADLESS=1 to skip the
# window even when a display is available.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# The machine's view, for every Ferry program and for ostree and flatpak: the fake sysroot
# and the demo user's per-user installation (and an empty system installation, so the host's
# own apps stay out of the demo).
machine_vars() {
  machine=(OSTREE_SYSROOT="$DEMO_SYSROOT"
    FLATPAK_USER_DIR="$DEMO_FLATPAK_USER_DIR"
    FLATPAK_SYSTEM_DIR="$DEMO_FLATPAK_SYSTEM_DIR"
    FLATPAK_CONFIG_DIR="$DEMO_FLATPAK_CONFIG_DIR"
    HOME="$DEMO_HOME"
    FERRY_RUN_DIR="$DEMO_RUN_DIR"
    FERRY_CTL="$ferryctl")
}
machine_env() { env "${machine[@]}" "$@"; }

# Whether $DISPLAY or $WAYLAND_DISPLAY names a display this process can open.
display_usable() {
  [ -z "${DEMO_HEADLESS:-}" ] || return 1
  if [ -n "${WAYLAND_DISPLAY:-}" ]; then
    local socket=$WAYLAND_DISPLAY
    [ "${socket#/}" != "$socket" ] || socket=${XDG_RUNTIME_DIR:-/nonexistent}/$socket
    [ -S "$socket" ] && return 0
  fi
  [ -n "${DISPLAY:-}" ] && xdpyinfo >/dev/null 2>&1
}

# Whether a notification server answers on the session bus.
notifications_available() {
  [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] &&
    timeout 10 gdbus call --session --dest org.freedesktop.Notifications \
      --object-path /org/freedesktop/Notifications \
      --method org.freedesktop.Notifications.GetServerInformation >/dev/null 2>&1
}

# The window part, run on a session bus with a notification server.
gui_session() {
  local dunst_pid=""
  if ! notifications_available; then
    echo "No notification server on this session bus: starting dunst for the demo."
    dunst >"$DEMO_WORK/dunst.log" 2>&1 &
    dunst_pid=$!
    gdbus wait --session --timeout 30 org.freedesktop.Notifications
  fi
  local locale_dir=$DEMO_WORK/locale
  bash scripts/i18n.sh compile "$locale_dir" >/dev/null
  # Keep the X connection working once HOME moves to the demo user's.
  export XAUTHORITY=${XAUTHORITY:-$HOME/.Xauthority}
  local gui_env=(FERRY_LOCALEDIR="$locale_dir" FERRY_LOG="${FERRY_LOG:-info,pgp=error}"
    XDG_DATA_DIRS="$repo_root/data:${XDG_DATA_DIRS:-/usr/local/share:/usr/share}")

  say "Starting Ferry's agent: ferry --background"
  env "${machine[@]}" "${gui_env[@]}" "$ferry" --background >"$DEMO_WORK/ferry.log" 2>&1 &
  local agent_pid=$!
  if ! gdbus wait --session --timeout 30 io.github.ferry.Ferry; then
    echo "The agent did not start; its log:" >&2
    cat "$DEMO_WORK/ferry.log" >&2
    exit 1
  fi
  echo "The agent is running (process $agent_pid, log in $DEMO_WORK/ferry.log)."

  record_drive
  say "Opening the window: ferry"
  # A second `ferry` hands over to the agent, which opens its window.
  env "${machine[@]}" "${gui_env[@]}" "$ferry" >>"$DEMO_WORK/ferry.log" 2>&1
  say "Over to you"
  echo "The notification \"Updates on $DEMO_DRIVE\" says what the drive offers, and the window"
  echo "lists it. Click Install (on the notification, or Install All in the window) and watch"
  echo "the progress in the window."
  echo "Press Enter here when you are done: this stops Ferry and shows the machine."
  while kill -0 "$agent_pid" 2>/dev/null; do
    local status=0
    read -r -t 1 _ || status=$?
    # A line, or the end of the input: done. Only the timeout goes round again.
    [ "$status" -gt 128 ] || break
  done
  kill "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  if [ -n "$dunst_pid" ]; then
    kill "$dunst_pid" 2>/dev/null || true
  fi
}

# What the drive hook does when the drive is plugged in: validate it and write its record.
record_drive() {
  say "Plugging in the drive: ferry-hook --mount $DEMO_DRIVE"
  printf 'on-insert = notify\n' >"$DEMO_WORK/ferry.conf"
  machine_env FERRY_SIDELOAD_DIR="$DEMO_WORK/sideload-repos" \
    FERRY_CONFIG="$DEMO_WORK/ferry.conf" FERRY_LOG=info,pgp=error \
    "$ferry_hook" --mount "$DEMO_DRIVE"
  echo "Drive record: $(ls "$DEMO_RUN_DIR"/drives/*.json)"
}

if [ "${1:-}" = --gui-session ]; then
  # Started again on a private session bus by the main flow below.
  machine_vars
  gui_session
  exit
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh must run as root (it installs packages and deploys a fake sysroot)." >&2
  exit 1
fi

say "Installing what is missing"
bash scripts/install-deps.sh

say "Building Ferry"
cargo build --quiet -p ferryctl -p ferry-hook -p ferry -p ferry-tests
target=$(realpath "${CARGO_TARGET_DIR:-target}")/debug
export ferryctl=$target/ferryctl ferry_hook=$target/ferry-hook ferry=$target/ferry
fixture=$target/ferry-fixture

if [ -n "${DEMO_DIR:-}" ]; then
  demo_root=$DEMO_DIR demo_top=$DEMO_DIR
else
  demo_top=$(mktemp -d /tmp/ferry-demo.XXXXXX)
  demo_root=$demo_top/scene
fi
say "Generating the demo drive and machine in $demo_root"
eval "$("$fixture" demo "$demo_root")"
export DEMO_WORK=$DEMO_DIR/work
export DEMO_RUN_DIR=$DEMO_WORK/run
mkdir -p "$DEMO_WORK"
machine_vars
echo "update drive:     $DEMO_DRIVE"
echo "  ExampleOS 2.0 (commit $DEMO_V2), signed by $DEMO_KEY_FINGERPRINT"
echo "  $DEMO_APP1_NAME $DEMO_APP1_NEW and $DEMO_APP2_NAME $DEMO_APP2_NEW, signed by $DEMO_APPS_KEY_FINGERPRINT"
echo "machine sysroot:  $DEMO_SYSROOT"
echo "machine apps:     $DEMO_FLATPAK_USER_DIR (per-user installation, HOME=$DEMO_HOME)"
echo
ostree admin status --sysroot="$DEMO_SYSROOT"
machine_env flatpak --user list

say "What Ferry finds on the drive: ferryctl scan $DEMO_DRIVE"
"$ferryctl" scan "$DEMO_DRIVE"

if display_usable; then
  if notifications_available; then
    gui_session
  else
    dbus-run-session -- bash "$0" --gui-session
  fi
else
  echo
  echo "No usable display (DISPLAY or WAYLAND_DISPLAY): the same flow through ferryctl."
  record_drive

  say "What the drive offers this machine: ferryctl list"
  machine_env "$ferryctl" list

  say "Installing it all: ferryctl install --all --yes"
  machine_env "$ferryctl" install --all --yes
fi

say "The machine now: ostree admin status"
ostree admin status --sysroot="$DEMO_SYSROOT"
say "The machine now: flatpak --user list"
machine_env flatpak --user list

say "Done"
echo "Remove the demo folder with: $fixture clean $demo_top"
