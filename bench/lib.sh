# Benchmark harness for Ferry. Source it from a benchmark script:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init                       # BENCH_DIR, release binaries, results dir
#   bench_tree "$BENCH_DIR/tree"     # the 20,000-file ~400 MB tree (generated once)
#   bench_archive_repo "$BENCH_DIR/src" "$BENCH_DIR/tree" org.example.Perf perf/x86_64/stable
#   setup_ferry()  { bench_fresh_repo "$BENCH_DIR/dst" bare-user-only; }
#   run_ferry()    { bench_time ferry "$FERRYCTL" pull --repo "$BENCH_DIR/dst" ...; }
#   setup_ostree() { bench_fresh_repo "$BENCH_DIR/dst" bare-user-only; }
#   run_ostree()   { bench_time ostree ostree --repo="$BENCH_DIR/dst" pull-local ...; }
#   bench_alternate 5 ferry ostree   # setup_X + run_X, alternating, caches dropped before each run
#   bench_report ferry ostree        # median wall time, peak RSS per case
#   echo "ratio: $(bench_ratio ferry ostree)"
#
# Environment:
#   BENCH_DIR     work directory (default: a new directory under /var/tmp); kept afterwards so
#                 the generated tree and source repos are reused by the next run
#   BENCH_RUNS    default number of runs for bench_alternate (5)
#   BENCH_DROP    1 to drop the page cache before every timed run (default 1 as root, else 0)
#   BENCH_SEED    seed of the generated tree (42)
#   BENCH_PROFILE release (default) or debug: the build the binaries come from
#   BENCH_SYNC    1 to end every timed run with `sync`, inside the timing, so a run ends when
#                 what it wrote is durable (default 0)
#
# Every timed run is recorded in $BENCH_DIR/results/<case>.tsv as
# `wall_seconds <TAB> peak_rss_kib <TAB> exit_status`; the full /usr/bin/time -v output is in
# $BENCH_DIR/results/<case>.<n>.time.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_LIB_DIR/.." && pwd)

bench_die() { echo "bench: $*" >&2; exit 1; }

# bench_init: creates BENCH_DIR and its results dir (cleared), builds release binaries and
# sets FERRYCTL and FERRY_FIXTURE to their paths.
bench_init() {
  [ -x /usr/bin/time ] || bench_die "/usr/bin/time is missing: run scripts/install-deps.sh"
  BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/ferry-bench.XXXXXX)}
  BENCH_RUNS=${BENCH_RUNS:-5}
  BENCH_SEED=${BENCH_SEED:-42}
  if [ -z "${BENCH_DROP:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then BENCH_DROP=1; else BENCH_DROP=0; fi
  fi
  export BENCH_DIR BENCH_RUNS BENCH_SEED BENCH_DROP
  mkdir -p "$BENCH_DIR"
  rm -rf "$BENCH_DIR/results"; mkdir -p "$BENCH_DIR/results"
  if [ -d "$BENCH_DIR/discarded" ]; then
    bench_empty_discarded
    echo "bench: deleted what an interrupted script left in $BENCH_DIR/discarded; for the" \
      "next minutes ext4 passes over those freed inodes, so the first runs may be slower" >&2
  fi
  # BENCH_PROFILE=debug: a quick check of a script, not figures.
  local profile=${BENCH_PROFILE:-release} flags=(--release) dir=release
  [ "$profile" = debug ] && { flags=(); dir=debug; }
  echo "bench: building $profile binaries" >&2
  (cd "$BENCH_ROOT" && cargo build "${flags[@]}" --quiet -p ferryctl -p ferry-tests) \
    || bench_die "cargo build ($profile) failed"
  local target=${CARGO_TARGET_DIR:-$BENCH_ROOT/target}
  FERRYCTL=$target/$dir/ferryctl
  FERRY_FIXTURE=$target/$dir/ferry-fixture
  export FERRYCTL FERRY_FIXTURE
  echo "bench: work directory $BENCH_DIR (runs=$BENCH_RUNS, drop caches=$BENCH_DROP)" >&2
}

# bench_tree DIR [SEED] [PRESET]: a deterministic tree of random bytes from `ferry-fixture
# gen-tree --preset PRESET`. The default preset, benchmark, is the 20,000-file (~400 MB) tree:
# 12000 x 256 B-4 KiB, 6000 x 4-32 KiB, 1900 x 32-128 KiB, 100 x 0.5-1.8 MiB; preset lan is
# 4,000 files (~212 MB). Skipped when DIR.stamp says DIR holds a complete tree for the same
# preset and seed.
bench_tree() {
  local dir=${1%/} seed=${2:-$BENCH_SEED} preset=${3:-benchmark}
  bench_stale "$dir" "$preset seed $seed" || return 0
  "$FERRY_FIXTURE" gen-tree --preset "$preset" --seed "$seed" "$dir" >&2 || bench_die "gen-tree failed"
  echo "$preset seed $seed" > "$dir.stamp"
}

# bench_archive_repo REPO TREE COLLECTION REF: commits TREE into a new archive repository with
# that collection ID (with ostree.sizes) and updates its summary. Skipped when REPO already
# holds REF from the same tree (REPO.stamp records it).
bench_archive_repo() {
  local repo=${1%/} tree=$2 collection=$3 ref=$4
  bench_stale "$repo" "$tree $ref $(cat "${tree%/}.stamp" 2>/dev/null)" || return 0
  ostree init --mode=archive --repo="$repo" --collection-id="$collection" || bench_die "ostree init failed"
  echo "bench: committing $tree into $repo (deflate-bound, ~25 s for the full tree)" >&2
  ostree --repo="$repo" commit -b "$ref" -s bench --generate-sizes "$tree" >/dev/null \
    || bench_die "ostree commit failed"
  ostree --repo="$repo" summary -u || bench_die "ostree summary failed"
  echo "$tree $ref $(cat "${tree%/}.stamp" 2>/dev/null)" > "$repo.stamp"
}

# bench_signing_key DIR NAME: a new ed25519 signing key for NAME in DIR/gnupg, which becomes
# GNUPGHOME; its public key goes to DIR/vendor.gpg and its fingerprint to BENCH_KEY.
bench_signing_key() {
  export GNUPGHOME=$1/gnupg
  mkdir -m 700 -p "$GNUPGHOME"
  gpg --batch --pinentry-mode loopback --passphrase '' \
    --quick-gen-key "$2" ed25519 sign never 2>/dev/null || bench_die "gpg could not make a key"
  BENCH_KEY=$(gpg --list-keys --with-colons | awk -F: '/^fpr:/ { print $10; exit }')
  gpg --batch --export "$BENCH_KEY" > "$1/vendor.gpg"
}

# bench_signed_repo DIR NAME REPO COLLECTION: a signing key for NAME in DIR (as
# bench_signing_key makes it, creating DIR) and an empty archive repository REPO with that
# collection ID, for a vendor's signed commits.
bench_signed_repo() {
  bench_signing_key "$1" "$2"
  ostree init --mode=archive --repo="$3" --collection-id="$4"
}

# bench_discard DIR: moves DIR aside, into $BENCH_DIR/discarded/, instead of deleting it.
# Deleting thousands of files just before a timed run slows that run: when ext4 allocates an
# inode it passes over those freed in the last minute or more (`recently_deleted`), reading
# inode tables to find them, so one run's clean-up would be charged to whichever tool runs
# next. bench_report deletes what was discarded, once every timed run is over.
bench_discard() {
  [ -e "$1" ] || return 0
  mkdir -p "$BENCH_DIR/discarded"
  mv "$1" "$(mktemp -u "$BENCH_DIR/discarded/XXXXXX")"
}

# bench_empty_discarded: deletes what bench_discard moved aside (also left by a script that
# was interrupted, which bench_init clears).
bench_empty_discarded() {
  rm -rf "$BENCH_DIR/discarded"
}

# bench_fresh_repo PATH MODE [COLLECTION]: discards PATH (bench_discard) and creates an empty
# repository there.
bench_fresh_repo() {
  bench_discard "$1"
  if [ -n "${3:-}" ]; then
    ostree init --mode="$2" --repo="$1" --collection-id="$3"
  else
    ostree init --mode="$2" --repo="$1"
  fi
}

# bench_drop_caches: writes dirty pages and drops the page cache, when BENCH_DROP=1.
bench_drop_caches() {
  if [ "${BENCH_DROP:-0}" = 1 ]; then
    sync
    echo 3 > /proc/sys/vm/drop_caches || bench_die "cannot drop caches (needs root; set BENCH_DROP=0)"
  fi
}

# bench_time CASE COMMAND [ARGS...]: runs COMMAND (not through a shell) under /usr/bin/time -v
# and appends wall time, peak RSS and exit status to $BENCH_DIR/results/CASE.tsv. Its output
# goes to $BENCH_DIR/results/CASE.<n>.out. Returns the command's exit status. With
# BENCH_SYNC=1, a `sync` follows the command inside the timing (through `sh`, whose peak RSS
# is below any command measured here; the reported peak is the largest of the processes).
bench_time() {
  local case=$1; shift
  local results="$BENCH_DIR/results" n
  n=$(( $(cat "$results/$case.tsv" 2>/dev/null | wc -l) + 1 ))
  local timefile="$results/$case.$n.time"
  if [ "${BENCH_SYNC:-0}" = 1 ]; then
    /usr/bin/time -v -o "$timefile" sh -c '"$@"; status=$?; sync; exit $status' bench-sync "$@" \
      > "$results/$case.$n.out" 2>&1
  else
    /usr/bin/time -v -o "$timefile" "$@" > "$results/$case.$n.out" 2>&1
  fi
  local status=$?
  awk -F': ' '
    /Elapsed \(wall clock\) time/ {
      n = split($NF, p, ":"); s = 0
      for (i = 1; i <= n; i++) s = s * 60 + p[i]
      wall = s
    }
    /Maximum resident set size/ { rss = $NF }
    /Exit status/ { st = $NF }
    END { printf "%.3f\t%d\t%d\n", wall, rss, st }
  ' "$timefile" >> "$results/$case.tsv"
  if [ "$status" -ne 0 ]; then
    echo "bench: $case run $n failed (exit $status); see $results/$case.$n.out" >&2
  fi
  return "$status"
}

# bench_alternate RUNS CASE...: RUNS rounds; each round runs every CASE once, in turn
# (reversed on even rounds, so no case always goes first). A case is a pair of functions:
# optional setup_CASE (not timed) and run_CASE, which calls bench_time CASE ....
bench_alternate() {
  local runs=${1:-$BENCH_RUNS}; shift
  local round case order
  for ((round = 1; round <= runs; round++)); do
    if ((round % 2)); then order=("$@"); else order=(); for case in "$@"; do order=("$case" "${order[@]}"); done; fi
    for case in "${order[@]}"; do
      if declare -F "setup_$case" >/dev/null; then "setup_$case" >/dev/null || bench_die "setup_$case failed"; fi
      bench_drop_caches
      echo "bench: round $round/$runs: $case" >&2
      "run_$case" || bench_die "run_$case failed in round $round"
    done
  done
}

# bench_median CASE [COLUMN]: median of a results column (1 = wall seconds, 2 = peak RSS KiB).
bench_median() {
  local file="$BENCH_DIR/results/$1.tsv" col=${2:-1}
  [ -s "$file" ] || bench_die "no results for $1"
  cut -f"$col" "$file" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_max CASE [COLUMN]: largest value of a results column.
bench_max() {
  local file="$BENCH_DIR/results/$1.tsv" col=${2:-1}
  [ -s "$file" ] || bench_die "no results for $1"
  cut -f"$col" "$file" | sort -g | tail -n 1
}

# bench_failures CASE: how many runs of CASE exited with a status other than 0 (for cases
# whose run_CASE tolerates failure, e.g. `bench_time ... || true`).
bench_failures() {
  local file="$BENCH_DIR/results/$1.tsv"
  [ -s "$file" ] || bench_die "no results for $1"
  awk -F'\t' '$3 != 0 { n++ } END { print n + 0 }' "$file"
}

# bench_peak_rss_mib CASE: the largest peak RSS over all runs of CASE, in MiB.
bench_peak_rss_mib() {
  awk -v k="$(bench_max "$1" 2)" 'BEGIN { printf "%.1f\n", k / 1024 }'
}

# bench_ratio CASE_A CASE_B: median wall time of A divided by that of B.
bench_ratio() {
  awk -v a="$(bench_median "$1")" -v b="$(bench_median "$2")" 'BEGIN {
    if (b <= 0) { print "inf"; exit } printf "%.2f\n", a / b }'
}

# bench_report CASE...: one line per case: runs, median/min/max wall time, peak RSS.
bench_report() {
  local case file
  bench_empty_discarded
  printf '%-24s %5s %10s %10s %10s %14s\n' case runs median_s min_s max_s peak_rss_MiB
  for case in "$@"; do
    file="$BENCH_DIR/results/$case.tsv"
    [ -s "$file" ] || { printf '%-24s  (no results)\n' "$case"; continue; }
    printf '%-24s %5d %10s %10s %10s %14s\n' "$case" "$(wc -l < "$file")" \
      "$(bench_median "$case")" "$(cut -f1 "$file" | sort -g | head -n 1)" \
      "$(bench_max "$case")" "$(bench_peak_rss_mib "$case")"
  done
}

# bench_limits REPO TREE: the machine's limits for the bytes a pull of REPO moves, measured
# BENCH_RUNS times each, alternating, with caches dropped before every run:
#   read_limit:  `cat` of every file under REPO/objects to /dev/null (the cold read of the
#                drive's objects, in directory order);
#   read_limit_parallel: the same with 8 `cat`s at once (xargs -P 8), the reads in flight a
#                drive pull keeps on a 2-core machine: what the device gives;
#   write_limit: TREE (the same content, as files) unpacked from a tar held in memory
#                (/dev/shm, which dropping caches does not empty) into a new directory, with
#                BENCH_SYNC's `sync` (the write of the same bytes as files);
#   read_write_limit: the parallel read and the write at the same time, as a pull does them,
#                timed until both are done and synced: what the device gives to both at once.
# The tar is removed afterwards. Report with
# `bench_report read_limit read_limit_parallel write_limit read_write_limit`.
bench_limits() {
  local repo=${1%/} tree=${2%/}
  BENCH_LIMIT_REPO=$repo
  BENCH_LIMIT_TAR=/dev/shm/ferry-bench-tree.$$.tar
  tar -C "$tree" -cf "$BENCH_LIMIT_TAR" . || bench_die "cannot pack $tree"
  setup_read_limit() { :; }
  run_read_limit() {
    bench_time read_limit sh -c 'find "$1/objects" -type f -print0 | xargs -0 cat > /dev/null' \
      read_limit "$BENCH_LIMIT_REPO"
  }
  setup_read_limit_parallel() { :; }
  run_read_limit_parallel() {
    bench_time read_limit_parallel sh -c \
      'find "$1/objects" -type f -print0 | xargs -0 -P 8 -n 256 cat > /dev/null' \
      read_limit_parallel "$BENCH_LIMIT_REPO"
  }
  setup_write_limit() { bench_discard "$BENCH_DIR/write_limit"; mkdir -p "$BENCH_DIR/write_limit"; }
  run_write_limit() {
    bench_time write_limit tar -C "$BENCH_DIR/write_limit" -xf "$BENCH_LIMIT_TAR"
  }
  setup_read_write_limit() { setup_write_limit; }
  run_read_write_limit() {
    bench_time read_write_limit sh -c \
      'find "$1/objects" -type f -print0 | xargs -0 -P 8 -n 256 cat > /dev/null & tar -C "$2" -xf "$3"; wait $!' \
      read_write_limit "$BENCH_LIMIT_REPO" "$BENCH_DIR/write_limit" "$BENCH_LIMIT_TAR"
  }
  bench_alternate "$BENCH_RUNS" read_limit read_limit_parallel write_limit read_write_limit
  rm -rf "$BENCH_LIMIT_TAR"; bench_discard "$BENCH_DIR/write_limit"
}

# bench_closeness CASE [LIMIT]: CASE's median time over LIMIT's median, or, without LIMIT,
# over the larger of the parallel read's and the write's medians (what a pull that
# overlapped reading and writing perfectly would take); 1.00 is at the limit.
bench_closeness() {
  local read write
  if [ -n "${2:-}" ]; then
    read=$(bench_median "$2"); write=$read
  else
    read=$(bench_median read_limit_parallel); write=$(bench_median write_limit)
  fi
  awk -v a="$(bench_median "$1")" -v r="$read" -v w="$write" 'BEGIN {
    l = (r > w) ? r : w; if (l <= 0) { print "inf"; exit } printf "%.2f\n", a / l }'
}

# --- LAN benchmarks: network namespaces and `ferryctl serve` processes, ended on exit --------
# A script adds each server's PID to SERVER_PIDS and makes its namespaces with bench_netns_add.
SERVER_PIDS=()
NAMESPACES=()

# bench_lan_down: stops every server in SERVER_PIDS, then deletes every namespace made.
bench_lan_down() {
  local pid ns
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}

# bench_lan_trap: bench_lan_down on exit, and an interrupt exits (so it runs then too).
bench_lan_trap() {
  trap bench_lan_down EXIT
  trap 'exit 130' INT TERM
}

# bench_netns_add NAME: a network namespace with its loopback up, deleted by bench_lan_down.
bench_netns_add() {
  ip netns add "$1"; NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

# bench_await_server NAME LOG TRIES: waits up to TRIES x 0.1 s for the server started last
# (SERVER_PIDS[-1]), logging to LOG, to print its address; sets URL_<NAME> to its repository's
# URL (`/0`). Dies when the server stops or never prints one.
bench_await_server() {
  local name=$1 log=$2 tries=$3 url="" i
  for ((i = 0; i < tries; i++)); do
    url=$(grep -o 'http://[^ ]*' "$log" 2>/dev/null | head -n 1 || true)
    [ -n "$url" ] && break
    kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null || bench_die "ferryctl serve $name stopped: $(cat "$log")"
    sleep 0.1
  done
  [ -n "$url" ] || bench_die "ferryctl serve $name printed no address: $(cat "$log")"
  printf -v "URL_$name" '%s/0' "${url%/}"
}

# bench_flatpak_env DIR: an isolated Flatpak "machine" under DIR (HOME, XDG and Flatpak
# directories, exported), as flatpak's own tests isolate theirs.
bench_flatpak_env() {
  export HOME=$1/home XDG_DATA_HOME=$1/home/share XDG_CACHE_HOME=$1/home/cache \
    XDG_CONFIG_HOME=$1/home/config XDG_STATE_HOME=$1/home/state XDG_RUNTIME_DIR=$1/runtime \
    FLATPAK_SYSTEM_DIR=$1/system FLATPAK_SYSTEM_CACHE_DIR=$1/system-cache \
    FLATPAK_CONFIG_DIR=$1/config FLATPAK_RUN_DIR=$1/run FLATPAK_FANCY_OUTPUT=0
  mkdir -p "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_CONFIG_HOME" "$XDG_STATE_HOME" \
    "$XDG_RUNTIME_DIR" "$FLATPAK_SYSTEM_DIR" "$FLATPAK_CONFIG_DIR" "$FLATPAK_RUN_DIR"
  chmod 700 "$XDG_RUNTIME_DIR"
}

# bench_stale DIR STAMP: whether DIR must be built again, because DIR.stamp (written last by
# the build, `echo STAMP > DIR.stamp`) does not say STAMP. When it must, DIR and DIR.stamp
# are removed first.
bench_stale() {
  if [ -f "$1.stamp" ] && [ "$(cat "$1.stamp")" = "$2" ]; then return 1; fi
  bench_clear_immutable "$1"
  rm -rf "$1" "$1.stamp"
}

# bench_clear_immutable DIR: `ostree admin deploy` marks deployment roots immutable, which
# rm needs cleared. Nothing to do when DIR does not exist.
bench_clear_immutable() {
  [ -d "$1" ] || return 0
  find "$1" -maxdepth 6 -path '*/ostree/deploy/*/deploy/*' -type d -prune \
    -exec chattr -i {} + 2>/dev/null || true
}
