#!/bin/bash
# Ferry's test command. On Debian 12, as root:
#   1. installs what is missing (scripts/install-deps.sh: apt packages, cargo-nextest);
#   2. builds every crate and target;
#   3. checks formatting (cargo fmt), lints (cargo clippy -D warnings), the API
#      documentation (cargo doc, warnings as errors) and unused dependencies (cargo machete);
#   4. runs every test with cargo-nextest (settings in .config/nextest.toml).
# Exits non-zero when any step fails. Root is required: tests attach loop devices, mount
# filesystems, and deploy fake sysroots with `ostree admin`.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh must run as root (loop devices, mounts, ostree admin deployments)." >&2
  echo "Run: sudo bash scripts/test.sh" >&2
  exit 1
fi

failed=()
step() {  # step NAME COMMAND...: runs and times one step, remembering failures
  local name=$1; shift
  local start=$SECONDS
  printf '\n==> %s\n' "$name"
  if "$@"; then
    printf '==> %s: ok (%ds)\n' "$name" $((SECONDS - start))
  else
    printf '==> %s: FAILED (%ds)\n' "$name" $((SECONDS - start))
    failed+=("$name")
    return 1
  fi
}

step "install dependencies" bash scripts/install-deps.sh || exit 1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# A one-off build gains nothing from incremental caches, which take gigabytes; set
# CARGO_INCREMENTAL=1 to keep them between runs.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
for tool in fmt clippy nextest machete; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "cargo $tool is missing: install it (rustup component add rustfmt clippy; cargo install cargo-nextest cargo-machete)" >&2
    exit 1
  fi
done

# Without a build nothing else can be judged.
step "build" cargo build --workspace --all-targets || exit 1
step "format" cargo fmt --all -- --check
step "lint" cargo clippy --workspace --all-targets -- -D warnings
step "documentation" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
step "unused dependencies" cargo machete
# Last, so the test runner's own summary closes the output when everything passed.
printf '\n==> test\n'
cargo nextest run --workspace || failed+=("test")

if ((${#failed[@]})); then
  printf '\nFailed steps: %s\n' "${failed[*]}"
  exit 1
fi
