#!/bin/bash
# Serving benchmark: the cost of serving a bare repository as an archive one on the fly.
# `ferryctl serve --repo` runs in a server network namespace joined to a client namespace by a
# veth pair without rate limit, once over an archive repository holding the bench tree
# (20,000 files, ~400 MB, `bench_archive_repo`) and once over a bare repository holding the
# same commit (pulled from the archive one). Cases:
#
#   one client   `ferryctl pull` of the commit from the bare repository vs from the archive
#                one, alternating, into a fresh bare-user-only repository in the client
#                namespace, the conversion cache emptied and the page cache dropped before each
#                run (target: bare/archive <= 1.2)
#   four clients four `ferryctl pull` at once from the bare repository, cache emptied first;
#                the server's CPU time (utime + stime from /proc) over the wall time of the
#                four pulls, in cores (target: < 1 core)
#
# Prints a summary table and exits 0 when both targets are met, 3 when one is missed or a pull
# failed.
#
#   sudo bash bench/serve.sh                         # BENCH_RUNS=5
#   sudo BENCH_DIR=/var/tmp/ferry-bench BENCH_RUNS=3 bash bench/serve.sh
#
# Environment (besides lib.sh's): SERVE_PULL_TIMEOUT (seconds before a pull is stopped and
# counted as failed, default 600). All traffic stays inside the namespaces made here; they and
# the servers are removed on exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SERVE_PULL_TIMEOUT=${SERVE_PULL_TIMEOUT:-600}
COLLECTION=org.example.Perf
REF=perf/x86_64/stable
CLIENTS=4

[ "$(id -u)" -eq 0 ] || bench_die "needs root (network namespaces)"
for tool in ip timeout; do command -v "$tool" >/dev/null || bench_die "$tool is missing"; done
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY
export LC_ALL=C.UTF-8 NO_COLOR=1 BENCH_SYNC=1

bench_init
bench_tree "$BENCH_DIR/tree"
ARCHIVE=$BENCH_DIR/src
bench_archive_repo "$ARCHIVE" "$BENCH_DIR/tree" "$COLLECTION" "$REF"
COMMIT=$(ostree --repo="$ARCHIVE" rev-parse "$REF")

# The same commit in a bare repository, as a remote ref whose remote has the collection ID
# (what `ferryctl serve` advertises of a repository that is not an archive).
BARE=$BENCH_DIR/serve-bare
if bench_stale "$BARE" "$COMMIT"; then
  ostree init --mode=bare --repo="$BARE"
  ostree --repo="$BARE" remote add --no-gpg-verify --collection-id="$COLLECTION" \
    origin "file://$ARCHIVE"
  echo "bench: pulling the bench tree into the bare repository $BARE" >&2
  ostree --repo="$BARE" pull origin "$REF" >/dev/null || bench_die "ostree pull into $BARE failed"
  echo "$COMMIT" > "$BARE.stamp"
fi
CACHE=$BENCH_DIR/serve-cache

# --- The LAN: server 10.232.0.1, client 10.232.0.2, one veth pair, no rate limit ----------
NS=ferry-bench-serve-$$
SERVER_NS=$NS-server
CLIENT_NS=$NS-client
bench_lan_trap

bench_netns_add "$SERVER_NS"
bench_netns_add "$CLIENT_NS"
ip -n "$CLIENT_NS" link add eth0 type veth peer name eth0 netns "$SERVER_NS"
ip -n "$SERVER_NS" addr add 10.232.0.1/24 dev eth0
ip -n "$CLIENT_NS" addr add 10.232.0.2/24 dev eth0
ip -n "$SERVER_NS" link set eth0 up
ip -n "$CLIENT_NS" link set eth0 up

# serve NAME REPO: `ferryctl serve` of REPO in the server namespace (caching in $CACHE); sets
# URL_<NAME> to its URL and PID_<NAME> to the server's process ID (`ip netns exec` execs it).
serve() {
  local name=$1 repo=$2 log=$BENCH_DIR/results/serve-$1.log
  FERRY_SERVE_CACHE=$CACHE ip netns exec "$SERVER_NS" "$FERRYCTL" serve --repo "$repo" \
    --address 10.232.0.1 --port 0 --no-advertise > "$log" 2>&1 &
  SERVER_PIDS+=($!)
  bench_await_server "$name" "$log" 600
  [ "$(cat "/proc/${SERVER_PIDS[-1]}/comm" 2>/dev/null)" = ferryctl ] \
    || bench_die "cannot find the process of ferryctl serve $name"
  printf -v "PID_$name" '%s' "${SERVER_PIDS[-1]}"
}

serve archive "$ARCHIVE"
serve bare "$BARE"

# --- One client: bare vs archive ------------------------------------------------------------
fresh_destination() {
  local dst=$BENCH_DIR/dst/$1 url=$2
  mkdir -p "$BENCH_DIR/dst"
  bench_fresh_repo "$dst" bare-user-only
  ostree --repo="$dst" remote add --no-gpg-verify --collection-id="$COLLECTION" origin "$url"
}

# pull_command DST URL: sets PULL to the client's pull, inside the client namespace.
pull_command() {
  PULL=(timeout --kill-after=10 "$SERVE_PULL_TIMEOUT" ip netns exec "$CLIENT_NS"
    "$FERRYCTL" pull --repo "$1" --from "$2" --remote origin "$REF")
}

# check_destination DST: the destination holds the commit and passes `ostree fsck`.
check_destination() {
  [ "$(ostree --repo="$1" rev-parse "origin:$REF" 2>/dev/null)" = "$COMMIT" ] \
    || bench_die "$1 does not hold $COMMIT"
  ostree --repo="$1" fsck --quiet >/dev/null 2>&1 || bench_die "ostree fsck of $1 failed"
}

setup_archive() { fresh_destination archive "$URL_archive"; }
run_archive() {
  pull_command "$BENCH_DIR/dst/archive" "$URL_archive"
  bench_time archive "${PULL[@]}" || true
}
setup_bare() { fresh_destination bare "$URL_bare"; rm -rf "$CACHE/objects"; }
run_bare() {
  pull_command "$BENCH_DIR/dst/bare" "$URL_bare"
  bench_time bare "${PULL[@]}" || true
}

started=$(date +%s)
bench_alternate "$BENCH_RUNS" bare archive
for case in bare archive; do
  if [ "$(bench_failures "$case")" -eq 0 ]; then check_destination "$BENCH_DIR/dst/$case"; fi
done

# --- Four clients at once from the bare repository -------------------------------------------
# cpu_ticks PID: utime + stime of PID's threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICKS_PER_SECOND=$(getconf CLK_TCK)
CORES_FILE=$BENCH_DIR/results/four-clients.cores
: > "$CORES_FILE"
FOUR_FAILED=0
for ((run = 1; run <= BENCH_RUNS; run++)); do
  for ((c = 1; c <= CLIENTS; c++)); do fresh_destination "four-$c" "$URL_bare"; done
  rm -rf "$CACHE/objects"
  bench_drop_caches
  before=$(cpu_ticks "$PID_bare")
  t0=$(date +%s.%N)
  pids=()
  for ((c = 1; c <= CLIENTS; c++)); do
    pull_command "$BENCH_DIR/dst/four-$c" "$URL_bare"
    "${PULL[@]}" > "$BENCH_DIR/results/four-clients.$run.$c.out" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || FOUR_FAILED=$((FOUR_FAILED + 1)); done
  t1=$(date +%s.%N)
  after=$(cpu_ticks "$PID_bare")
  awk -v b="$before" -v a="$after" -v hz="$TICKS_PER_SECOND" -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "%.3f\t%.2f\n", (a - b) / hz / (t1 - t0), t1 - t0 }' >> "$CORES_FILE"
  echo "bench: four clients, run $run: $(tail -n 1 "$CORES_FILE" | cut -f1) cores over $(tail -n 1 "$CORES_FILE" | cut -f2) s" >&2
done
if [ "$FOUR_FAILED" -eq 0 ]; then
  for ((c = 1; c <= CLIENTS; c++)); do check_destination "$BENCH_DIR/dst/four-$c"; done
fi
elapsed=$(( $(date +%s) - started ))

# --- Report --------------------------------------------------------------------------------
echo
echo "Serving: $(du -sh --apparent-size "$BENCH_DIR/tree" | cut -f1) in $(find "$BENCH_DIR/tree" -type f | wc -l) files;" \
  "$BENCH_RUNS runs per case, medians; timed runs took ${elapsed} s"
bench_report bare archive
echo

MISSED=0
row() { printf '%-44s %-30s %-10s %s\n' "$1" "$2" "$3" "$4"; [ "$4" = ok ] || MISSED=1; }
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
  ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 < l + 0); print (v != "inf" && ok) ? "ok" : "MISSED" }'; }
printf '%-44s %-30s %-10s %s\n' figure value target verdict
failures=$(( $(bench_failures bare) + $(bench_failures archive) ))
ratio=$(bench_ratio bare archive)
if [ "$failures" -gt 0 ]; then
  row "1 client, unlimited: bare/archive" "$failures pull(s) failed" "<= 1.2" FAILED
else
  row "1 client, unlimited: bare/archive" "$(bench_median bare) s / $(bench_median archive) s = $ratio" \
    "<= 1.2" "$(verdict "$ratio" "<=" 1.2)"
fi
cores=$(cut -f1 "$CORES_FILE" | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "inf"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
if [ "$FOUR_FAILED" -gt 0 ]; then
  row "4 clients from bare: server CPU" "$FOUR_FAILED pull(s) failed" "< 1 core" FAILED
else
  row "4 clients from bare: server CPU" "$cores cores" "< 1 core" "$(verdict "$cores" "<" 1)"
fi

if [ "$MISSED" = 1 ]; then
  echo "bench: a target was missed or a pull failed (see above)" >&2
  exit 3
fi
