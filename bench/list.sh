#!/bin/bash
# `ferryctl list --offline` with 3 drives and 200 installed refs. Target: median <= 150 ms.
#
# Setup (once per BENCH_DIR, reused afterwards):
#   - a vendor archive repository (collection org.example.Bench) with 200 refs, every commit
#     signed with an ed25519 GPG key;
#   - the machine: a bare-user repository with remote "origin" (that collection, the vendor key
#     imported, GPG verification on) holding v1 of all 200 refs under refs/remotes/origin/;
#   - drive 1 from `ostree create-usb` with v2 of all 200 refs, then v3 of half of them is
#     published and drives 2 and 3 are written with the result (100 at v3, 100 at v2).
# Each run resolves 600 candidates (300 distinct commits) and lists 200 updates.
#
# Environment: BENCH_RUNS (default 15), BENCH_DROP (default 0 here: warm caches, as for a
# drive already plugged in; 1 drops the page cache before every run), BENCH_DIR.
set -euo pipefail
BENCH_RUNS=${BENCH_RUNS:-15}
BENCH_DROP=${BENCH_DROP:-0}
. "$(dirname "$0")/lib.sh"
bench_init

REFS=200
COLLECTION=org.example.Bench
SETUP=$BENCH_DIR/list-setup
STAMP="refs=$REFS v1"

ref_name() { printf 'bench/app%03d/x86_64/stable' "$1"; }

setup_scene() {
  bench_stale "$SETUP" "$STAMP" || return 0
  local vendor=$SETUP/vendor tree=$SETUP/tree
  bench_signed_repo "$SETUP" 'Bench Vendor <bench@example.org>' "$vendor" $COLLECTION
  mkdir -p "$tree/usr/bin" "$tree/usr/share/doc"
  echo '#!/bin/sh' > "$tree/usr/bin/app"; chmod 755 "$tree/usr/bin/app"
  echo 'shared by every version' > "$tree/usr/share/doc/README"

  commit_all() {  # commit_all VERSION FIRST LAST
    local version=$1 i
    echo "bench: committing $version of refs $2..$3" >&2
    for ((i = $2; i <= $3; i++)); do
      echo "app $i version $version" > "$tree/usr/share/doc/version"
      ostree --repo="$vendor" commit -b "$(ref_name "$i")" -s "app $i $version" \
        --add-metadata-string=version="$version" --generate-sizes \
        --gpg-sign="$BENCH_KEY" --gpg-homedir="$GNUPGHOME" "$tree" >/dev/null
    done
  }
  all_refs() { local i; for ((i = 0; i < REFS; i++)); do ref_name "$i"; echo; done; }
  usb_args() { local r; for r in $(all_refs); do printf '%s %s ' $COLLECTION "$r"; done; }

  commit_all 1.0 0 $((REFS - 1))
  ostree init --mode=bare-user --repo="$SETUP/machine"
  ostree --repo="$SETUP/machine" remote add --collection-id=$COLLECTION \
    --gpg-import="$SETUP/vendor.gpg" origin "file://$vendor"
  # shellcheck disable=SC2046
  ostree --repo="$SETUP/machine" pull origin $(all_refs) >/dev/null

  commit_all 2.0 0 $((REFS - 1))
  ostree --repo="$vendor" summary -u
  # shellcheck disable=SC2046
  mkdir -p "$SETUP/drive1"
  ostree --repo="$vendor" create-usb "$SETUP/drive1" $(usb_args) >/dev/null
  commit_all 3.0 0 $((REFS / 2 - 1))
  ostree --repo="$vendor" summary -u
  # shellcheck disable=SC2046
  mkdir -p "$SETUP/drive2"
  ostree --repo="$vendor" create-usb "$SETUP/drive2" $(usb_args) >/dev/null
  # shellcheck disable=SC2046
  mkdir -p "$SETUP/drive3"
  ostree --repo="$vendor" create-usb "$SETUP/drive3" $(usb_args) >/dev/null
  gpgconf --kill gpg-agent || true
  echo "$STAMP" > "$SETUP.stamp"
}

setup_scene
mkdir -p "$BENCH_DIR/empty-run" "$BENCH_DIR/empty-home"
LIST_ENV=(env FERRY_RUN_DIR="$BENCH_DIR/empty-run" HOME="$BENCH_DIR/empty-home"
  XDG_CACHE_HOME="$BENCH_DIR/empty-home/cache" FERRY_LOG=error)
LIST_ARGS=(list --offline --json --repo "$SETUP/machine"
  --from "$SETUP/drive1" --from "$SETUP/drive2" --from "$SETUP/drive3")

# The listing must be right before it is timed: 200 updates (100 at 3.0, 100 at 2.0), no problems.
"${LIST_ENV[@]}" "$FERRYCTL" "${LIST_ARGS[@]}" > "$BENCH_DIR/results/listing.json"
python3 - "$BENCH_DIR/results/listing.json" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    listing = json.load(f)
updates = listing["updates"]
versions = sorted(u["version"] for u in updates)
assert len(updates) == 200, len(updates)
assert versions.count("3.0") == 100 and versions.count("2.0") == 100, versions
assert not listing["problems"], listing["problems"]
v3 = [u for u in updates if u["version"] == "3.0"]
assert all(len(u["sources"]) == 2 for u in v3), "v3 is on drives 2 and 3 only"
print("bench: listing checked: 200 updates, 100 from two drives", file=sys.stderr)
EOF

run_list() { bench_time list "${LIST_ENV[@]}" "$FERRYCTL" "${LIST_ARGS[@]}"; }
bench_alternate "$BENCH_RUNS" list
bench_report list
median_ms=$(awk -v s="$(bench_median list)" 'BEGIN { printf "%d", s * 1000 + 0.5 }')
echo "ferryctl list --offline, 3 drives, $REFS installed refs: median ${median_ms} ms (target <= 150 ms)"
