#!/bin/bash
# Ferry demo. On Debian 12, as root:
#   1. installs what is missing and builds Ferry;
#   2. generates, in a temporary folder, an update drive as `ostree create-usb` writes it
#      (ExampleOS 2.0, GPG-signed by its vendor) and a machine at ExampleOS 1.0 (a fake
#      sysroot deployed with `ostree admin`, and a plain repository trusting the vendor key);
#   3. shows what Ferry finds on the drive (`ferryctl scan`), lists the update it offers this
#      machine (`ferryctl list`), installs it with progress (`ferryctl install`), and shows the
#      new deployment (`ostree admin status`).
# The demo folder is kept; the last lines say how to remove it.
# Set DEMO_DIR to choose the folder (it must not exist yet).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh must run as root (it installs packages and deploys a fake sysroot)." >&2
  exit 1
fi

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "Installing what is missing"
bash scripts/install-deps.sh

say "Building Ferry"
cargo build --quiet -p ferryctl -p ferry-tests
target=${CARGO_TARGET_DIR:-target}/debug
ferryctl=$target/ferryctl
fixture=$target/ferry-fixture

demo_root=${DEMO_DIR:-$(mktemp -d /tmp/ferry-demo.XXXXXX)/scene}
say "Generating the demo drive and machine in $demo_root"
eval "$("$fixture" demo "$demo_root")"
echo "update drive:      $DEMO_DRIVE"
echo "machine sysroot:   $DEMO_SYSROOT (ExampleOS 1.0 deployed)"
echo "machine repo:      $DEMO_TARGET_REPO (remote 'exampleos' at 1.0)"
echo "vendor key:        $DEMO_KEY_FINGERPRINT"
echo "on the drive:      ExampleOS 2.0, commit $DEMO_V2"
echo
ostree admin status --sysroot="$DEMO_SYSROOT"

say "What Ferry finds on the drive: ferryctl scan $DEMO_DRIVE"
"$ferryctl" scan "$DEMO_DRIVE"

say "The same as JSON: ferryctl scan --json"
"$ferryctl" scan --json "$DEMO_DRIVE"

say "What the drive offers this machine: ferryctl list --sysroot $DEMO_SYSROOT --from $DEMO_DRIVE --offline"
"$ferryctl" list --sysroot "$DEMO_SYSROOT" --from "$DEMO_DRIVE" --offline

say "Installing it: ferryctl install --sysroot $DEMO_SYSROOT --from $DEMO_DRIVE --offline --all --yes"
"$ferryctl" install --sysroot "$DEMO_SYSROOT" --from "$DEMO_DRIVE" --offline --all --yes

say "The machine now: ostree admin status"
ostree admin status --sysroot="$DEMO_SYSROOT"

say "Done"
echo "Remove the demo folder with: $fixture clean $(dirname "$demo_root")"
