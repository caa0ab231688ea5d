#!/bin/bash
# Classroom benchmark: twelve machines, each a network namespace on one bridge with its own fake
# sysroot at OS 1.0 and every link limited to 100 Mbit (tc tbf both ways), discover each other
# with DNS-SD. A drive with OS 2.0 (about 55 MB of new files) goes into machine 1 (kiosk
# install); every machine runs `ferry-hook --nearby` with on-nearby = install, as
# ferry-nearby.timer would, and shares its own OS repository (`ferryctl serve` of the bare
# sysroot repository, converted to archive objects on the fly).
#
# Prints, from insertion until the last machine is on 2.0 (`ostree admin status`, fsck-clean):
#   - one machine pulling the update from one other (the room of two);
#   - all twelve, every updated machine sharing onwards (target <= 4x the first);
#   - all twelve with only machine 1 sharing (about 11x if its link is the limit).
#
# The scene is built by the release build of tests/tests/classroom.rs (`bench_classroom`).
#
#   sudo bash bench/classroom.sh        # ~3 minutes
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces, tc)" >&2; exit 1; }
for tool in ip tc ostree; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
cd "$root"
echo "bench: building release binaries" >&2
cargo build --release --quiet -p ferryctl -p ferry-hook
exec cargo test --release --quiet -p ferry-tests --test classroom -- --ignored --exact \
  bench_classroom --nocapture
