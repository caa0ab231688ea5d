#!/bin/bash
# Fuzzes every parser of untrusted bytes: runs each cargo-fuzz target in fuzz/fuzz_targets/
# for SECONDS (default 600), one after the other. Needs the nightly toolchain; installs
# cargo-fuzz when missing. Crash, timeout and out-of-memory inputs land in
# fuzz/artifacts/<target>/, where the normal test suite (hook/tests/fuzz_corpus.rs) replays
# them once checked in. Exits non-zero when any target found one.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

# -O every time: the same flags for build and run (release, no debug assertions), so a run
# does not rebuild everything.
cargo +nightly fuzz build -O || exit 1
# AddressSanitizer keeps up to 256 MiB of freed memory in quarantine, which alone reached the
# RSS limit after ~250k runs of the summary and txt targets; a smaller quarantine keeps the
# limit about the parsers.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32}

failed=()
for target in "${targets[@]}"; do
  # libFuzzer adds what it finds to the first corpus directory: keep that out of the
  # checked-in seeds.
  scratch=fuzz/target/corpus/$target
  mkdir -p "$scratch" "fuzz/artifacts/$target"
  log=fuzz/target/$target.log
  echo "== $target: ${seconds}s"
  cargo +nightly fuzz run -O "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=256 -malloc_limit_mb=256 -timeout=5 \
    -print_final_stats=1 >"$log" 2>&1
  status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  grep -E '^#[0-9]+ .*(DONE|pulse)' "$log" | tail -1 || true
  if [ $status -ne 0 ]; then
    echo "!! $target failed (exit $status); see $log and fuzz/artifacts/$target/"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "Crashes or limits hit in: ${failed[*]}"
  exit 1
fi
echo "No crashes in ${#targets[@]} target(s), ${seconds}s each."
