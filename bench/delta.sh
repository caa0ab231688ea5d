#!/bin/bash
# Static delta benchmark: an OS update in which 10% of the bench tree's files change (every
# tenth file in name order: half of those with 16 bytes overwritten in the middle, half
# replaced by new random bytes of the same size), committed unsigned as v1 and v2 of one ref.
# Every run starts from a destination at v1 (a copy made before the run, untimed), page cache
# dropped, `sync` inside the timing (BENCH_SYNC=1); runs alternate and medians are compared.
# Ferry's pulls print JSON events (--json), which say whether a delta was applied.
#
#   (a) drive:   `ferryctl pull --from DRIVE` of v2 with a Ferry-written delta (`ferryctl delta
#                generate`, listed by `ostree summary -u`) vs the same pull with --no-deltas
#                (Ferry's object pull). Bytes read are the `File system inputs` of
#                /usr/bin/time (512-byte blocks read from storage by the pull, cold cache).
#                Targets: bytes read <= 0.25x, wall time <= 0.35x.
#   (b) http:    one `ferryctl serve` on 127.0.0.1 serving the repository with an
#                ostree-generated delta (`ostree static-delta generate`): `ferryctl pull --from
#                URL` vs `ostree pull` of the same remote (which uses the same delta).
#                Target: wall time <= 0.8x.
#   (c) prepare: `ferryctl prepare-drive --os --delta-from installed` vs the full object copy
#                from a sysroot updated from v1 to v2, onto an empty folder; bytes written are
#                `du -sb` of the drive's repository after the run. Target: <= 0.25x.
#
#   sudo bash bench/delta.sh              # BENCH_RUNS=5 rounds; BENCH_DIR to reuse the trees
#   sudo DELTA_TINY=1 bash bench/delta.sh # a quick check of the script: the many-files tree
#                                         # (2,500 small files, 3 of 1-2 MiB), 1 round, a
#                                         # debug build, caches not dropped
#
# Exits 0 when every target is met, 3 when one is missed, 1 when it could not run.
set -euo pipefail

if [ "${DELTA_TINY:-0}" = 1 ]; then
  export BENCH_RUNS=${BENCH_RUNS:-1} BENCH_DROP=${BENCH_DROP:-0}
  export BENCH_PROFILE=${BENCH_PROFILE:-debug}
  PRESET=many-files
else
  PRESET=benchmark
fi
. "$(dirname "$0")/lib.sh"
export BENCH_SYNC=1 LC_ALL=C.UTF-8
# Nothing leaves the machine: the only server is on 127.0.0.1.
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY

COLLECTION=org.example.Delta
REF=delta/x86_64/stable
OS_NAME=deltaos

bench_init
TREE1=$BENCH_DIR/delta-tree1-$PRESET
TREE2=$BENCH_DIR/delta-tree2-$PRESET
bench_tree "$TREE1" "$BENCH_SEED" "$PRESET"

# update_tree: TREE2, a copy of TREE1 with every tenth file changed; alternately 16 bytes in
# the middle overwritten or the whole file replaced, by a fixed pseudo-random stream.
update_tree() {
  local stamp="$(cat "$TREE1.stamp") update 10%"
  bench_stale "$TREE2" "$stamp" || return 0
  cp -a "$TREE1" "$TREE2"
  local n=0 file size
  # stream N: pseudo-random bytes, the same for the same seed and N (cut off by head).
  stream() {
    { openssl enc -aes-128-ctr -nosalt -pass "pass:$BENCH_SEED-$1" -in /dev/zero 2>/dev/null \
      || true; }
  }
  while IFS= read -r file; do
    n=$((n + 1))
    size=$(stat -c %s "$file")
    if ((n % 2)); then
      stream "$n" | head -c 16 | dd of="$file" bs=1 seek=$((size / 2)) conv=notrunc status=none
    else
      stream "$n" | head -c "$size" > "$file.new"
      mv "$file.new" "$file"
    fi
  done < <(cd "$TREE2" && find . -type f | LC_ALL=C sort | awk 'NR % 10 == 0' | sed "s|^\.|$TREE2|")
  echo "bench: changed $n of $(find "$TREE2" -type f | wc -l) files" >&2
  echo "$stamp" > "$TREE2.stamp"
}
update_tree

# The publisher's archive repository with v1 and v2 (built once per tree).
SRC=$BENCH_DIR/delta-src-$PRESET
if bench_stale "$SRC" "$(cat "$TREE2.stamp")"; then
  ostree init --mode=archive --repo="$SRC" --collection-id="$COLLECTION"
  echo "bench: committing v1 and v2 (deflate-bound)" >&2
  ostree --repo="$SRC" commit -b "$REF" -s v1 --generate-sizes "$TREE1" >/dev/null
  ostree --repo="$SRC" commit -b "$REF" -s v2 --generate-sizes "$TREE2" >/dev/null
  cat "$TREE2.stamp" > "$SRC.stamp"
fi
V2=$(ostree --repo="$SRC" rev-parse "$REF")
V1=$(ostree --repo="$SRC" rev-parse "$REF^")

# Two copies sharing the objects (hard links), each with its own delta and summary:
# DRIVE with Ferry's, WEB with ostree's.
DRIVE=$BENCH_DIR/delta-drive
WEB=$BENCH_DIR/delta-web
for repo in "$DRIVE" "$WEB"; do rm -rf "$repo"; cp -al "$SRC" "$repo"; done
"$FERRYCTL" delta generate --repo "$DRIVE" --from "$V1" --to "$V2" >&2 \
  || bench_die "ferryctl delta generate failed"
ostree --repo="$DRIVE" summary -u
ostree --repo="$WEB" static-delta generate --from="$V1" --to="$V2" >/dev/null \
  || bench_die "ostree static-delta generate failed"
ostree --repo="$WEB" summary -u
DELTA_BYTES=$(du -sb "$DRIVE/deltas" | cut -f1)

# A destination at v1, copied for every run.
TEMPLATE=$BENCH_DIR/delta-dst-v1
bench_fresh_repo "$TEMPLATE" bare-user-only
ostree --repo="$TEMPLATE" remote add --no-gpg-verify --collection-id="$COLLECTION" origin \
  "file://$SRC"
ostree --repo="$TEMPLATE" pull-local --remote=origin "$SRC" "$V1" >/dev/null
ostree --repo="$TEMPLATE" refs --create="origin:$REF" "$V1"
DST=$BENCH_DIR/delta-dst
fresh_destination() {
  bench_discard "$DST"; cp -a "$TEMPLATE" "$DST"
  if [ -n "${1:-}" ]; then ostree --repo="$DST" remote add --no-gpg-verify \
    --collection-id="$COLLECTION" web "$1"; fi
}

# check_v2 CASE: the destination holds v2, fsck-clean.
check_v2() {
  [ "$(ostree --repo="$DST" rev-parse "$2" 2>/dev/null)" = "$V2" ] || bench_die "$1: no v2 in the destination"
  ostree --repo="$DST" fsck --quiet >/dev/null 2>&1 || bench_die "$1: fsck of the destination failed"
}

# bench_inputs_median CASE: median `File system inputs` of CASE's runs, in bytes.
bench_inputs_median() {
  local f
  for f in "$BENCH_DIR/results/$1".*.time; do
    awk -F': ' '/File system inputs/ { print $NF * 512 }' "$f"
  done | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- (a) a drive with a Ferry-written delta vs the object pull ------------------------------
setup_drive_delta() { fresh_destination; }
run_drive_delta() {
  bench_time drive_delta "$FERRYCTL" pull --json --repo "$DST" --from "$DRIVE" --remote origin "$REF"
  check_v2 drive_delta "origin:$REF"
}
setup_drive_objects() { fresh_destination; }
run_drive_objects() {
  bench_time drive_objects "$FERRYCTL" pull --json --repo "$DST" --from "$DRIVE" --remote origin \
    --no-deltas "$REF"
  check_v2 drive_objects "origin:$REF"
}
bench_alternate "$BENCH_RUNS" drive_delta drive_objects
grep -q "applying the static delta" "$BENCH_DIR/results/drive_delta.1.out" \
  || bench_die "the drive pull did not use the delta: $(cat "$BENCH_DIR/results/drive_delta.1.out")"

# --- (b) one `ferryctl serve` with ostree's delta: Ferry vs ostree --------------------------
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$DST"
}
trap cleanup EXIT
"$FERRYCTL" serve --repo "$WEB" --address 127.0.0.1 --port 0 --no-advertise \
  > "$BENCH_DIR/results/serve.log" 2>&1 &
SERVER_PID=$!
URL=
for ((i = 0; i < 300; i++)); do
  URL=$(grep -o 'http://[^ ]*' "$BENCH_DIR/results/serve.log" 2>/dev/null | head -n 1 || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || bench_die "ferryctl serve stopped: $(cat "$BENCH_DIR/results/serve.log")"
  sleep 0.1
done
[ -n "$URL" ] || bench_die "ferryctl serve printed no address"
URL=${URL%/}/0
setup_http_ferry() { fresh_destination "$URL"; }
run_http_ferry() {
  bench_time http_ferry "$FERRYCTL" pull --json --repo "$DST" --from "$URL" --remote origin "$REF"
  check_v2 http_ferry "origin:$REF"
}
setup_http_ostree() { fresh_destination "$URL"; }
run_http_ostree() {
  bench_time http_ostree ostree --repo="$DST" pull web "$REF"
  check_v2 http_ostree "web:$REF"
}
bench_alternate "$BENCH_RUNS" http_ferry http_ostree
grep -q "applying the static delta" "$BENCH_DIR/results/http_ferry.1.out" \
  || bench_die "the HTTP pull did not use the delta"

# --- (c) prepare-drive with --delta-from vs the full copy ----------------------------------
# A sysroot at v1, updated to v2: both trees under /usr/share with a kernel, as bootable
# commits of an OS repository, deployed by `ostree admin`.
SCENE=$BENCH_DIR/delta-scene-$PRESET
SYSROOT=$SCENE/sysroot
scene() {
  local stamp; stamp=$(cat "$SRC.stamp")
  bench_stale "$SCENE" "$stamp" || return 0
  mkdir -p "$SCENE"
  ostree init --mode=archive --repo="$SCENE/osrepo" --collection-id="$COLLECTION"
  local version tree osdata
  for version in 1 2; do
    tree=$TREE1; [ "$version" = 2 ] && tree=$TREE2
    osdata=$SCENE/osdata
    rm -rf "$osdata"; mkdir -p "$osdata/usr/lib/modules/6.1.0" "$osdata/usr/etc"
    echo "a kernel" > "$osdata/usr/lib/modules/6.1.0/vmlinuz"
    echo "an initramfs" > "$osdata/usr/lib/modules/6.1.0/initramfs.img"
    printf 'NAME=DeltaOS\nID=%s\nVERSION_ID=%s\n' "$OS_NAME" "$version" > "$osdata/usr/etc/os-release"
    cp -al "$tree" "$osdata/usr/share"
    ostree --repo="$SCENE/osrepo" commit --bootable --generate-sizes \
      --add-metadata-string=version=$version.0 -b "$REF" -s "v$version" "$osdata" >/dev/null
    rm -rf "$osdata"
    if [ "$version" = 1 ]; then
      mkdir -p "$SYSROOT"
      ostree admin init-fs "$SYSROOT" >/dev/null
      ostree admin os-init --sysroot="$SYSROOT" "$OS_NAME" >/dev/null
      ostree --repo="$SYSROOT/ostree/repo" remote add --no-gpg-verify \
        --collection-id="$COLLECTION" "$OS_NAME" "file://$SCENE/osrepo"
    fi
    ostree --repo="$SYSROOT/ostree/repo" pull-local --remote="$OS_NAME" "$SCENE/osrepo" "$REF" >/dev/null
    ostree admin deploy --sysroot="$SYSROOT" --os="$OS_NAME" --karg=root=LABEL=ROOT \
      "$OS_NAME:$REF" >/dev/null
  done
  rm -rf "$SCENE/osrepo"
  echo "$stamp" > "$SCENE.stamp"
}
scene
PREPARED=$BENCH_DIR/delta-prepared
setup_prepare_delta() { rm -rf "$PREPARED"; mkdir -p "$PREPARED"; }
run_prepare_delta() {
  bench_time prepare_delta "$FERRYCTL" prepare-drive "$PREPARED" --sysroot "$SYSROOT" --os \
    --delta-from installed
  du -sb "$PREPARED/.ostree" | cut -f1 >> "$BENCH_DIR/results/prepare_delta.bytes"
}
setup_prepare_full() { rm -rf "$PREPARED"; mkdir -p "$PREPARED"; }
run_prepare_full() {
  bench_time prepare_full "$FERRYCTL" prepare-drive "$PREPARED" --sysroot "$SYSROOT" --os
  du -sb "$PREPARED/.ostree" | cut -f1 >> "$BENCH_DIR/results/prepare_full.bytes"
}
bench_alternate "$BENCH_RUNS" prepare_delta prepare_full
ls "$PREPARED/.ostree/repo/deltas" >/dev/null 2>&1 && bench_die "the full copy wrote a delta"
rm -rf "$PREPARED"

# --- Report ----------------------------------------------------------------------------------
median_of() { sort -g "$1" | awk '{ v[NR] = $1 } END {
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) { print "inf"; exit } printf "%.2f\n", a / b }'; }
at_most() { awk -v r="$1" -v t="$2" 'BEGIN { exit !(r != "inf" && r <= t) }'; }

bench_report drive_delta drive_objects http_ferry http_ostree prepare_delta prepare_full
read_delta=$(bench_inputs_median drive_delta)
read_objects=$(bench_inputs_median drive_objects)
written_delta=$(median_of "$BENCH_DIR/results/prepare_delta.bytes")
written_full=$(median_of "$BENCH_DIR/results/prepare_full.bytes")
read_ratio=$(ratio "$read_delta" "$read_objects")
drive_ratio=$(bench_ratio drive_delta drive_objects)
http_ratio=$(bench_ratio http_ferry http_ostree)
prepare_ratio=$(ratio "$written_delta" "$written_full")
echo "Ferry's delta v1 -> v2: $DELTA_BYTES bytes"
echo "(a) drive, bytes read delta/objects: $read_ratio ($read_delta / $read_objects) (target <= 0.25)"
echo "(a) drive, time delta/objects (median): $drive_ratio (target <= 0.35)"
echo "(b) http, time ferry/ostree with ostree's delta (median): $http_ratio (target <= 0.8)"
echo "(c) prepare-drive, bytes written delta/full: $prepare_ratio ($written_delta / $written_full) (target <= 0.25)"
echo "ferry peak RSS (drive delta): $(bench_peak_rss_mib drive_delta) MiB"
missed=0
at_most "$read_ratio" 0.25 || missed=1
at_most "$drive_ratio" 0.35 || missed=1
at_most "$http_ratio" 0.8 || missed=1
at_most "$prepare_ratio" 0.25 || missed=1
[ "$missed" = 0 ] || { echo "a target was missed" >&2; exit 3; }
