#!/bin/bash
# LAN pull benchmark: `ferryctl pull` from computers nearby, each a `ferryctl serve` in its own
# network namespace joined to the client's namespace by its own veth pair, rates set with
# `tc tbf` on both ends of each link. The data: 4,000 files, ~212 MB (`gen-tree --preset
# lan`) committed unsigned into an archive repository (ostree.sizes, summary). Every run
# pulls into a fresh bare-user-only repository inside the client namespace, page cache dropped
# before it, `sync` inside the timing. Cases (BENCH_CASES, in this order):
#
#   one-unlimited  one peer, no rate limit: ferry vs `ostree pull` from the same server
#                  (target: ferry/ostree <= 0.5)
#   one-300        one peer at 300 Mbit: ferry vs ostree (target <= 1.0), and ferry's
#                  throughput against the link rate
#   three-100      three peers at 100 Mbit each vs one at 100 Mbit (target: >= 2.7x faster)
#   three-300      the same at 300 Mbit each
#   tamper         three peers, the third serving a copy of the repository with one altered
#                  .filez object, vs three honest peers (target <= 1.3x); at LAN_TAMPER_RATE
#
# plus Ferry's peak RSS over all its runs (target <= 64 MiB). Runs of a case alternate
# (bench_alternate); a failed pull is recorded and reported, not fatal. Prints a summary table
# and exits 0 when every target is met, 3 when one is missed or a pull failed.
#
#   sudo bash bench/lan.sh                          # all cases, BENCH_RUNS=5
#   sudo BENCH_CASES="one-300 tamper" BENCH_RUNS=3 bash bench/lan.sh
#
# Environment (besides lib.sh's): BENCH_CASES, LAN_TAMPER_RATE (tbf rate of the tamper case,
# default 300mbit, or `unlimited`), LAN_PULL_TIMEOUT (seconds before a pull is stopped and
# counted as failed, default 600). All traffic stays inside the namespaces made here; they and
# the servers are removed on exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ALL_CASES="one-unlimited one-300 three-100 three-300 tamper"
BENCH_CASES=${BENCH_CASES:-$ALL_CASES}
LAN_TAMPER_RATE=${LAN_TAMPER_RATE:-300mbit}
LAN_PULL_TIMEOUT=${LAN_PULL_TIMEOUT:-600}
COLLECTION=org.example.Lan
REF=lan/x86_64/stable
# The file whose object the tampering peer alters: one in the middle of the tree.
TAMPERED_FILE=d020/f02000.bin

for case in $BENCH_CASES; do
  case " $ALL_CASES " in *" $case "*) ;; *) bench_die "unknown case $case (cases: $ALL_CASES)" ;; esac
done
[ "$(id -u)" -eq 0 ] || bench_die "needs root (network namespaces, tc)"
for tool in ip tc timeout; do command -v "$tool" >/dev/null || bench_die "$tool is missing"; done
# Nothing may leave the namespaces, not even through a proxy.
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY
export LC_ALL=C.UTF-8 NO_COLOR=1 BENCH_SYNC=1

bench_init
bench_tree "$BENCH_DIR/lan-tree" "$BENCH_SEED" lan
SRC=$BENCH_DIR/lan-src
bench_archive_repo "$SRC" "$BENCH_DIR/lan-tree" "$COLLECTION" "$REF"
COMMIT=$(ostree --repo="$SRC" rev-parse "$REF")
# What crosses a link in a pull: the objects (HTTP headers and TCP/IP framing come on top).
PAYLOAD_BYTES=$(find "$SRC/objects" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')

# A copy of the source whose every file is a hard link, but for the one altered object
# (ferry-fixture rewrites it through a new file, so the source is untouched).
TAMPERED=$BENCH_DIR/lan-tampered
tampered_copy() {
  local stamp
  stamp="$(cat "$SRC.stamp") $TAMPERED_FILE"
  bench_stale "$TAMPERED" "$stamp" || return 0
  cp -al "$SRC" "$TAMPERED"
  "$FERRY_FIXTURE" tamper-filez "$TAMPERED" "$REF" "/$TAMPERED_FILE" \
    "$BENCH_DIR/lan-tree/$TAMPERED_FILE" >&2 || bench_die "cannot alter $TAMPERED_FILE"
  echo "$stamp" > "$TAMPERED.stamp"
}
case " $BENCH_CASES " in *" tamper "*) tampered_copy ;; esac

# --- The LAN: a client namespace and three peer namespaces, one veth pair per peer ---------
NS=ferry-bench-$$
CLIENT=$NS-client
PEERS=(1 2 3)
bench_lan_trap

# Peer K is 10.231.K.1 (eth0 in namespace $NS-pK); the client reaches it as 10.231.K.2 on its
# interface peerK.
lan_up() {
  local k
  bench_netns_add "$CLIENT"
  for k in "${PEERS[@]}"; do
    bench_netns_add "$NS-p$k"
    ip -n "$CLIENT" link add "peer$k" type veth peer name eth0 netns "$NS-p$k"
    ip -n "$CLIENT" addr add "10.231.$k.2/24" dev "peer$k"
    ip -n "$NS-p$k" addr add "10.231.$k.1/24" dev eth0
    ip -n "$CLIENT" link set "peer$k" up
    ip -n "$NS-p$k" link set eth0 up
  done
}

# lan_rate RATE: every link at RATE (a tc rate such as 300mbit) in both directions, or
# without any limit for `unlimited`. The bucket holds 10 ms at the rate, at least 128 KiB
# (more than a 64 KiB GSO segment), and the queue 50 ms.
lan_rate() {
  local rate=$1 k end burst
  if [ "$rate" != unlimited ]; then
    burst=$(tc_bits "$rate")
    burst=$(( burst / 8 / 100 )); [ "$burst" -ge 131072 ] || burst=131072
  fi
  for k in "${PEERS[@]}"; do
    for end in "$NS-p$k eth0" "$CLIENT peer$k"; do
      set -- $end
      if [ "$rate" = unlimited ]; then
        tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
      else
        tc -n "$1" qdisc replace dev "$2" root tbf rate "$rate" burst "$burst" latency 50ms \
          || bench_die "tc tbf failed on $2 in $1"
      fi
    done
  done
  echo "bench: links at $rate" >&2
}

# tc_bits RATE: bits per second of a tc rate written as Nkbit, Nmbit or Ngbit.
tc_bits() {
  local n=${1%[kmg]bit}
  case $1 in
    *kbit) echo $(( n * 1000 )) ;; *mbit) echo $(( n * 1000000 )) ;; *gbit) echo $(( n * 1000000000 )) ;;
    *) bench_die "rate $1: write it as Nkbit, Nmbit or Ngbit" ;;
  esac
}

# serve NAME K REPO: `ferryctl serve` of REPO in peer K's namespace; sets URL_<NAME> to the
# repository's URL as the client sees it.
serve() {
  local name=$1 k=$2 repo=$3 log=$BENCH_DIR/results/serve-$1.log
  ip netns exec "$NS-p$k" "$FERRYCTL" serve --repo "$repo" --address "10.231.$k.1" --port 0 \
    --no-advertise > "$log" 2>&1 &
  SERVER_PIDS+=($!)
  bench_await_server "$name" "$log" 300
}

lan_up
serve peer1 1 "$SRC"
serve peer2 2 "$SRC"
serve peer3 3 "$SRC"
case " $BENCH_CASES " in *" tamper "*) serve tamperer 3 "$TAMPERED" ;; esac

# --- Timed cases ---------------------------------------------------------------------------
# A timed case is named TOOL_LABEL (TOOL ferry or ostree); CASE_URLS[CASE] lists the servers
# it pulls from. Each run starts from a fresh destination with remote origin at the first.
declare -A CASE_URLS
FERRY_CASES=()

define_case() {
  local case=$1; shift
  CASE_URLS[$case]="$*"
  [[ $case == ferry_* ]] && FERRY_CASES+=("$case")
  eval "setup_$case() { fresh_destination $case; }"
  eval "run_$case() { pull $case; }"
}

fresh_destination() {
  local dst=$BENCH_DIR/dst/$1 urls
  read -r -a urls <<< "${CASE_URLS[$1]}"
  mkdir -p "$BENCH_DIR/dst"
  bench_fresh_repo "$dst" bare-user-only
  ostree --repo="$dst" remote add --no-gpg-verify --collection-id="$COLLECTION" origin "${urls[0]}"
}

# pull CASE: one timed pull inside the client namespace. A failure (or a pull still running
# after LAN_PULL_TIMEOUT) is recorded in CASE's results; it does not stop the benchmark.
pull() {
  local case=$1 dst=$BENCH_DIR/dst/$1 urls url from=()
  read -r -a urls <<< "${CASE_URLS[$case]}"
  local in_client=(timeout --kill-after=10 "$LAN_PULL_TIMEOUT" ip netns exec "$CLIENT")
  if [[ $case == ferry_* ]]; then
    for url in "${urls[@]}"; do from+=(--from "$url"); done
    bench_time "$case" "${in_client[@]}" "$FERRYCTL" pull --repo "$dst" "${from[@]}" \
      --remote origin "$REF" || true
  else
    bench_time "$case" "${in_client[@]}" ostree --repo="$dst" pull origin "$REF" || true
  fi
  return 0
}

# check_destination CASE: the last destination of CASE, when its last run succeeded, must hold
# the commit and pass `ostree fsck`; then it is set aside (bench_discard).
check_destination() {
  local case=$1 dst=$BENCH_DIR/dst/$1 last
  last=$(tail -n 1 "$BENCH_DIR/results/$case.tsv" | cut -f3)
  if [ "$last" = 0 ]; then
    [ "$(ostree --repo="$dst" rev-parse "origin:$REF" 2>/dev/null)" = "$COMMIT" ] \
      || bench_die "$case: the destination does not hold $COMMIT"
    ostree --repo="$dst" fsck --quiet >/dev/null 2>&1 || bench_die "$case: ostree fsck of the destination failed"
  fi
  bench_discard "$dst"
}

# run_group RATE CASE...: every CASE alternated BENCH_RUNS times with all links at RATE.
run_group() {
  local rate=$1 case; shift
  lan_rate "$rate"
  bench_alternate "$BENCH_RUNS" "$@"
  for case in "$@"; do check_destination "$case"; done
}

define_case ferry_one_unlimited "$URL_peer1"
define_case ostree_one_unlimited "$URL_peer1"
define_case ferry_one_300 "$URL_peer1"
define_case ostree_one_300 "$URL_peer1"
define_case ferry_one_100 "$URL_peer1"
define_case ferry_three_100 "$URL_peer1" "$URL_peer2" "$URL_peer3"
define_case ferry_one_300x "$URL_peer1"
define_case ferry_three_300 "$URL_peer1" "$URL_peer2" "$URL_peer3"
define_case ferry_honest "$URL_peer1" "$URL_peer2" "$URL_peer3"
if [ -n "${URL_tamperer:-}" ]; then
  define_case ferry_tampered "$URL_peer1" "$URL_peer2" "$URL_tamperer"
fi

started=$(date +%s)
for case in $BENCH_CASES; do
  echo "bench: case $case" >&2
  case $case in
    one-unlimited) run_group unlimited ferry_one_unlimited ostree_one_unlimited ;;
    one-300) run_group 300mbit ferry_one_300 ostree_one_300 ;;
    three-100) run_group 100mbit ferry_one_100 ferry_three_100 ;;
    three-300) run_group 300mbit ferry_one_300x ferry_three_300 ;;
    tamper) run_group "$LAN_TAMPER_RATE" ferry_honest ferry_tampered ;;
  esac
done
lan_rate unlimited
elapsed=$(( $(date +%s) - started ))

# --- Report --------------------------------------------------------------------------------
has_results() { [ -s "$BENCH_DIR/results/$1.tsv" ]; }
ran=()
for case in "${!CASE_URLS[@]}"; do has_results "$case" && ran+=("$case"); done
mapfile -t ran < <(printf '%s\n' "${ran[@]}" | sort)

echo
echo "LAN pull: $(du -sh --apparent-size "$BENCH_DIR/lan-tree" | cut -f1) in $(find "$BENCH_DIR/lan-tree" -type f | wc -l) files," \
  "objects $PAYLOAD_BYTES bytes; $BENCH_RUNS runs per case, medians; timed runs took ${elapsed} s"
bench_report "${ran[@]}"
echo

MISSED=0
# row FIGURE VALUE TARGET VERDICT
row() { printf '%-44s %-30s %-16s %s\n' "$1" "$2" "$3" "$4"; [ "$4" = ok ] || MISSED=1; }
# verdict VALUE OP LIMIT: ok or MISSED.
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
  ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0); print (v != "inf" && ok) ? "ok" : "MISSED" }'; }
# failed CASE...: "FAILED: ..." when a run of a CASE failed, else nothing.
failed() {
  local case n out=""
  for case in "$@"; do
    n=$(bench_failures "$case")
    [ "$n" -eq 0 ] || out+="$case: $n of $(wc -l < "$BENCH_DIR/results/$case.tsv") runs failed; "
  done
  [ -z "$out" ] || echo "FAILED (${out%; })"
}
median_rate_mbit() { awk -v b="$PAYLOAD_BYTES" -v s="$(bench_median "$1")" 'BEGIN { printf "%.0f\n", b * 8 / s / 1e6 }'; }

printf '%-44s %-30s %-16s %s\n' figure value target verdict
for case in $BENCH_CASES; do
  case $case in
    one-unlimited)
      problem=$(failed ferry_one_unlimited ostree_one_unlimited)
      value="$(bench_median ferry_one_unlimited) s / $(bench_median ostree_one_unlimited) s = $(bench_ratio ferry_one_unlimited ostree_one_unlimited)"
      row "1 peer, unlimited: ferry/ostree" "$value" "<= 0.5" \
        "${problem:-$(verdict "$(bench_ratio ferry_one_unlimited ostree_one_unlimited)" "<=" 0.5)}" ;;
    one-300)
      problem=$(failed ferry_one_300 ostree_one_300)
      value="$(bench_median ferry_one_300) s / $(bench_median ostree_one_300) s = $(bench_ratio ferry_one_300 ostree_one_300)"
      row "1 peer, 300 Mbit: ferry/ostree" "$value" "<= 1.0" \
        "${problem:-$(verdict "$(bench_ratio ferry_one_300 ostree_one_300)" "<=" 1.0)}"
      mbit=$(median_rate_mbit ferry_one_300)
      row "1 peer, 300 Mbit: ferry's payload rate" "$mbit Mbit/s ($(awk -v m="$mbit" 'BEGIN { printf "%.0f", m / 3 }')% of link)" \
        ">= 270 Mbit/s" "${problem:-$(verdict "$mbit" ">=" 270)}"
      row "  (ostree's payload rate)" "$(median_rate_mbit ostree_one_300) Mbit/s" "-" ok ;;
    three-100|three-300)
      r=${case#three-}; one=ferry_one_$r; [ "$r" = 300 ] && one=ferry_one_300x
      problem=$(failed "$one" "ferry_three_$r")
      speedup=$(bench_ratio "$one" "ferry_three_$r")
      row "3 peers vs 1, $r Mbit each: speed-up" "$(bench_median "$one") s / $(bench_median "ferry_three_$r") s = ${speedup}x" \
        ">= 2.7x" "${problem:-$(verdict "$speedup" ">=" 2.7)}" ;;
    tamper)
      problem=$(failed ferry_honest ferry_tampered)
      bad=$(bench_failures ferry_tampered)
      if [ "$bad" -gt 0 ]; then
        n=$(awk -F'\t' '$3 != 0 { print NR; exit }' "$BENCH_DIR/results/ferry_tampered.tsv")
        echo "bench: the pull with a tampering peer failed in $bad run(s); the end of run $n's" \
          "output ($BENCH_DIR/results/ferry_tampered.$n.out):" >&2
        tail -n 5 "$BENCH_DIR/results/ferry_tampered.$n.out" | sed 's/^/    /' >&2
        value="pull failed ($bad of $(wc -l < "$BENCH_DIR/results/ferry_tampered.tsv") runs)"
      else
        value="$(bench_median ferry_tampered) s / $(bench_median ferry_honest) s = $(bench_ratio ferry_tampered ferry_honest)"
      fi
      row "3 peers, 1 tampering ($LAN_TAMPER_RATE): vs honest" "$value" \
        "<= 1.3" "${problem:-$(verdict "$(bench_ratio ferry_tampered ferry_honest)" "<=" 1.3)}" ;;
  esac
done
peak=0
for case in "${FERRY_CASES[@]}"; do
  has_results "$case" || continue
  kib=$(bench_max "$case" 2); [ "$kib" -le "$peak" ] || peak=$kib
done
peak_mib=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')
row "ferry peak RSS, all runs" "$peak_mib MiB" "<= 64 MiB" "$(verdict "$peak_mib" "<=" 64)"

if [ "$MISSED" = 1 ]; then
  echo "bench: a target was missed or a pull failed (see above)" >&2
  exit 3
fi
