#!/bin/bash
# Install benchmark: a whole `ferryctl install` of a ~400 MB Flatpak app update from a drive
# written by `flatpak create-usb`, against `flatpak update --sideload-repo=<drive>` on the same
# data in the same run, alternating, page cache dropped before every run, a `sync` inside every
# timed run (BENCH_SYNC=1) so a run ends when what it wrote is durable. Each run starts from
# a fresh copy of the same per-user installation (runtime and app v1 installed, the remote's
# URL unreachable, as on a machine without network). Ferry re-hashes every object; flatpak does
# not re-hash what it copies from a sideload repository. Then the machine's limits for the same
# bytes (bench_limits): the cold read of the drive's objects, the write of the tree as files,
# and both at once. Prints the median wall-time ratio ferry/flatpak against the target (ratio <= 0.7) and
# how close Ferry gets to the limits.
#
#   sudo bash bench/install.sh          # BENCH_RUNS=5 rounds; BENCH_DIR to reuse the scene
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export BENCH_SYNC=1

APP=org.example.Bench
RUNTIME=org.example.BenchPlatform
COLLECTION=org.example.BenchApps
REMOTE=bench

bench_init
bench_tree "$BENCH_DIR/tree"
ARCH=$(flatpak --default-arch)

# The scene, built once per tree: signed repo with a runtime and app v1/v2 (v2 carries the
# tree), a drive from a peer that installed v2, and a client installation with v1.
scene() {
  local s=$BENCH_DIR/install-scene
  local stamp="$(cat "$BENCH_DIR/tree.stamp") $ARCH"
  bench_stale "$s" "$stamp" || return 0
  mkdir -p "$s"
  bench_signing_key "$s" 'Ferry Bench <bench@example.org>'
  local sign=(--gpg-sign="$BENCH_KEY" --gpg-homedir="$GNUPGHOME")

  # A runtime with a shell, as flatpak's own tests make one.
  local rt=$s/rt; mkdir -p "$rt/usr/bin" "$rt/usr/lib" "$rt/files"; ln -s lib "$rt/usr/lib64"
  printf '[Runtime]\nname=%s\nruntime=%s/%s/stable\nsdk=%s/%s/stable\n' \
    "$RUNTIME" "$RUNTIME" "$ARCH" "$RUNTIME" "$ARCH" > "$rt/metadata"
  local b p
  for b in bash cat; do
    p=$(type -P "$b"); cp "$p" "$rt/usr/bin/"
    ldd "$p" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
  done | sort -u | while read -r p; do cp "$p" "$rt/usr/lib/"; done
  ln -s bash "$rt/usr/bin/sh"; cp /sbin/ldconfig "$rt/usr/bin/ldconfig"
  flatpak build-export --runtime --collection-id="$COLLECTION" "${sign[@]}" --no-update-summary \
    --disable-sandbox "$s/repo" "$rt" stable >/dev/null

  local app=$s/app
  publish() {  # publish VERSION [PAYLOAD_TREE]
    rm -rf "$app"; mkdir -p "$app/files/bin"
    printf '[Application]\nname=%s\nruntime=%s/%s/stable\nsdk=%s/%s/stable\n' \
      "$APP" "$RUNTIME" "$ARCH" "$RUNTIME" "$ARCH" > "$app/metadata"
    printf '#!/bin/sh\necho "%s %s"\n' "$APP" "$1" > "$app/files/bin/hello.sh"
    chmod +x "$app/files/bin/hello.sh"
    if [ -n "${2:-}" ]; then mkdir -p "$app/files/share"; cp -a "$2" "$app/files/share/payload"; fi
    flatpak build-finish --command=hello.sh "$app" >/dev/null
    echo "bench: exporting $APP $1 (deflate-bound for the full tree)" >&2
    flatpak build-export --collection-id="$COLLECTION" "${sign[@]}" --no-update-summary \
      --disable-sandbox "$s/repo" "$app" stable >/dev/null
    flatpak build-update-repo "${sign[@]}" "$s/repo" >/dev/null
  }
  publish v1

  ( bench_flatpak_env "$s/client-template"
    flatpak --user remote-add --gpg-import="$s/vendor.gpg" --collection-id="$COLLECTION" \
      "$REMOTE" "file://$s/repo"
    flatpak --user install -y --noninteractive "$REMOTE" "$APP" >/dev/null
    # Offline from now on: only the drive has v2.
    flatpak --user remote-modify --url="file://$s/nonexistent" "$REMOTE" )

  publish v2 "$BENCH_DIR/tree"
  ( bench_flatpak_env "$s/peer"
    flatpak --user remote-add --gpg-import="$s/vendor.gpg" --collection-id="$COLLECTION" \
      "$REMOTE" "file://$s/repo"
    flatpak --user install -y --noninteractive "$REMOTE" "$APP" >/dev/null
    mkdir -p "$s/drive"; flatpak --user create-usb "$s/drive" "$APP" >/dev/null )
  rm -rf "$s/peer" "$app" "$rt"
  echo "$stamp" > "$s.stamp"
}
scene
SCENE=$BENCH_DIR/install-scene
DRIVE=$SCENE/drive

fresh_client() {
  bench_discard "$BENCH_DIR/client"
  cp -a "$SCENE/client-template" "$BENCH_DIR/client"
}
check_v2() {
  ( bench_flatpak_env "$BENCH_DIR/client"
    out=$(flatpak --user run "$APP")
    [ "$out" = "$APP v2" ] || bench_die "$1: the app prints '$out' after the update" )
}

setup_ferry() { fresh_client; }
run_ferry() {
  ( bench_flatpak_env "$BENCH_DIR/client"
    bench_time ferry env FERRY_RUN_DIR="$BENCH_DIR/ferry-run" "$FERRYCTL" install \
      --installation user --from "$DRIVE" --offline --yes "$APP" )
  check_v2 ferry
}
setup_flatpak() { fresh_client; }
run_flatpak() {
  ( bench_flatpak_env "$BENCH_DIR/client"
    bench_time flatpak flatpak --user update -y --noninteractive --sideload-repo="$DRIVE/.ostree/repo" \
      "$APP" )
  check_v2 flatpak
}

mkdir -p "$BENCH_DIR/ferry-run"
bench_alternate "$BENCH_RUNS" ferry flatpak
bench_limits "$DRIVE/.ostree/repo" "$BENCH_DIR/tree"
bench_report ferry flatpak read_limit read_limit_parallel write_limit read_write_limit
ratio=$(bench_ratio ferry flatpak)
echo "ratio ferry/flatpak (median wall time): $ratio (target <= 0.7)"
echo "ferry peak RSS: $(bench_peak_rss_mib ferry) MiB"
echo "ferry / max(read_limit_parallel, write_limit): $(bench_closeness ferry) (1.00 = at the limit)"
echo "ferry / read_write_limit: $(bench_closeness ferry read_write_limit) (1.00 = as fast as reading and writing the same bytes at once)"
