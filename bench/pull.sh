#!/bin/bash
# Pull benchmark: the 20,000-file, ~400 MB tree committed to an archive repository (standing
# for a drive), pulled into fresh bare-user-only repositories, alternating between
#   ferry:  ferryctl pull --from SRC --remote origin REF
#   ostree: ostree pull-local --untrusted --remote=origin SRC REF
# with the page cache dropped before every run and a `sync` inside every timed run
# (BENCH_SYNC=1), so a run ends when what it wrote is durable. Both re-hash every object.
# Then the machine's limits for the same bytes (bench_limits): the cold read of the source's
# objects, the write of the tree as files, and both at once. Prints the median wall-time
# ratio ferry/ostree, Ferry's peak RSS and how close Ferry gets to the limits, against the
# targets (ratio <= 0.45, peak RSS <= 64 MiB).
#
#   sudo bash bench/pull.sh            # BENCH_RUNS=5 rounds; BENCH_DIR to reuse the tree
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export BENCH_SYNC=1

COLLECTION=org.example.Perf
REF=perf/x86_64/stable

bench_init
bench_tree "$BENCH_DIR/tree"
bench_archive_repo "$BENCH_DIR/src" "$BENCH_DIR/tree" "$COLLECTION" "$REF"

# A destination like a machine's: remote origin of the collection. The benchmark repository
# is not signed, so the remote verifies no signatures (checksums are still all checked).
fresh_destination() {
  bench_fresh_repo "$BENCH_DIR/dst" bare-user-only
  ostree --repo="$BENCH_DIR/dst" remote add --no-gpg-verify --collection-id="$COLLECTION" \
    origin "file://$BENCH_DIR/src"
}

setup_ferry() { fresh_destination; }
run_ferry() {
  bench_time ferry "$FERRYCTL" pull --repo "$BENCH_DIR/dst" --from "$BENCH_DIR/src" \
    --remote origin "$REF"
}
setup_ostree() { fresh_destination; }
run_ostree() {
  bench_time ostree ostree --repo="$BENCH_DIR/dst" pull-local --untrusted --remote=origin \
    "$BENCH_DIR/src" "$REF"
}

bench_alternate "$BENCH_RUNS" ferry ostree

# The last destination must be complete and valid for the figures to mean anything.
setup_ferry >/dev/null
bench_time ferry-check "$FERRYCTL" pull --repo "$BENCH_DIR/dst" --from "$BENCH_DIR/src" \
  --remote origin "$REF" || bench_die "ferryctl pull failed"
ostree --repo="$BENCH_DIR/dst" fsck --quiet >/dev/null || bench_die "fsck of Ferry's result failed"

bench_limits "$BENCH_DIR/src" "$BENCH_DIR/tree"

bench_report ferry ostree read_limit read_limit_parallel write_limit read_write_limit
ratio=$(bench_ratio ferry ostree)
rss=$(bench_peak_rss_mib ferry)
echo "time ratio ferry/ostree (median): $ratio (target <= 0.45)"
echo "ferry peak RSS: $rss MiB (target <= 64 MiB)"
echo "ferry / max(read_limit_parallel, write_limit): $(bench_closeness ferry) (1.00 = at the limit)"
echo "ferry / read_write_limit: $(bench_closeness ferry read_write_limit) (1.00 = as fast as reading and writing the same bytes at once)"
