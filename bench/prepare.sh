#!/bin/bash
# Drive preparation benchmark: the same refs written to a drive by `ferryctl prepare-drive`
# and by the stock tools (`ostree create-usb` for the OS, then `flatpak create-usb` for the
# app), alternating, each run ending with `sync` inside the timing (BENCH_SYNC=1) and starting
# on a freshly made ext4 filesystem on a loop device, with the page cache dropped.
#
# The refs: the bench tree (~400 MB, 20,000 files) committed as a bootable OS and deployed in
# a fake sysroot (its repository is bare, as a machine's own is), and an app with its runtime
# installed in a per-user Flatpak installation (bare-user-only). Ferry's own time on FAT32
# (fusefat) and exFAT (exfat-fuse) is reported beside it when those tools are installed, and
# the drive's raw write rate for the same bytes (`dd` of one file, then `sync`) as the limit,
# with the cold reads no run that reads its writes back can avoid.
#
#   sudo bash bench/prepare.sh          # BENCH_RUNS=5 rounds; BENCH_DIR to reuse the scene
#   sudo PREPARE_FUSE=0 bash bench/prepare.sh   # ext4 only
#
# Targets: stock/ferry median ≥ 5 (bare source), ≥ 10 for the archive source (the OS commit
# in a sysroot whose repository is an archive, against `ostree create-usb` alone); Ferry's
# peak RSS ≤ 128 MiB. Exits 0 when the targets are met, 3 when one is missed, 1 when it could
# not run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || bench_die "needs root (loop devices, mounts)"
OS_NAME=benchos
OS_COLLECTION=org.example.BenchOs
OS_REF=benchos/x86_64/stable
APP=org.example.PrepareBench
RUNTIME=org.example.PrepareBenchPlatform
APP_COLLECTION=org.example.PrepareBenchApps
REMOTE=bench
# Large enough for the tree twice over (archive objects are compressed, the runtime small).
IMAGE_MIB=${PREPARE_IMAGE_MIB:-1536}
PREPARE_FUSE=${PREPARE_FUSE:-1}
export BENCH_SYNC=1

bench_init
bench_tree "$BENCH_DIR/tree"
ARCH=$(flatpak --default-arch)
SCENE=$BENCH_DIR/prepare-scene
SYSROOT=$SCENE/sysroot
MAKER=$SCENE/maker
MNT=$BENCH_DIR/prepare-mnt
IMAGE=$BENCH_DIR/prepare-drive.img
LOOP=

# The scene, built once per tree: the OS deployed in a fake sysroot, and the app with its
# runtime installed by a "maker" installation from a signed repository with a collection ID.
scene() {
  local stamp="$(cat "$BENCH_DIR/tree.stamp") $ARCH"
  bench_stale "$SCENE" "$stamp" || return 0
  mkdir -p "$SCENE"

  # The OS: the tree under /usr/share, with the kernel and /usr/etc `ostree admin deploy`
  # needs. Hard links: the tree is not copied.
  local osdata=$SCENE/osdata
  mkdir -p "$osdata/usr/lib/modules/6.1.0" "$osdata/usr/etc" "$osdata/usr/share"
  echo "a kernel" > "$osdata/usr/lib/modules/6.1.0/vmlinuz"
  echo "an initramfs" > "$osdata/usr/lib/modules/6.1.0/initramfs.img"
  printf 'NAME=BenchOS\nID=benchos\nVERSION_ID=1\n' > "$osdata/usr/etc/os-release"
  cp -al "$BENCH_DIR/tree" "$osdata/usr/share/bench"
  ostree init --mode=archive --repo="$SCENE/osrepo" --collection-id="$OS_COLLECTION"
  echo "bench: committing the OS (deflate-bound, ~25 s)" >&2
  ostree --repo="$SCENE/osrepo" commit --bootable --generate-sizes \
    --add-metadata-string=version=1.0 -b "$OS_REF" -s bench "$osdata" >/dev/null
  rm -rf "$osdata"
  mkdir -p "$SYSROOT"
  ostree admin init-fs "$SYSROOT" >/dev/null
  ostree admin os-init --sysroot="$SYSROOT" "$OS_NAME" >/dev/null
  ostree --repo="$SYSROOT/ostree/repo" remote add --no-gpg-verify \
    --collection-id="$OS_COLLECTION" "$OS_NAME" "file://$SCENE/osrepo"
  ostree --repo="$SYSROOT/ostree/repo" pull-local --remote="$OS_NAME" "$SCENE/osrepo" "$OS_REF"
  ostree admin deploy --sysroot="$SYSROOT" --os="$OS_NAME" --karg=root=LABEL=ROOT \
    "$OS_NAME:$OS_REF" >/dev/null
  rm -rf "$SCENE/osrepo"

  # The runtime: a shell and its libraries, as flatpak's own tests make one.
  bench_signing_key "$SCENE" 'Ferry Bench <bench@example.org>'
  local sign=(--gpg-sign="$BENCH_KEY" --gpg-homedir="$GNUPGHOME")
  local rt=$SCENE/rt b p
  mkdir -p "$rt/usr/bin" "$rt/usr/lib" "$rt/files"; ln -s lib "$rt/usr/lib64"
  printf '[Runtime]\nname=%s\nruntime=%s/%s/stable\nsdk=%s/%s/stable\n' \
    "$RUNTIME" "$RUNTIME" "$ARCH" "$RUNTIME" "$ARCH" > "$rt/metadata"
  for b in bash cat; do
    p=$(type -P "$b"); cp "$p" "$rt/usr/bin/"
    ldd "$p" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
  done | sort -u | while read -r p; do cp "$p" "$rt/usr/lib/"; done
  ln -s bash "$rt/usr/bin/sh"; cp /sbin/ldconfig "$rt/usr/bin/ldconfig"
  flatpak build-export --runtime --collection-id="$APP_COLLECTION" "${sign[@]}" \
    --no-update-summary --disable-sandbox "$SCENE/repo" "$rt" stable >/dev/null

  local app=$SCENE/app
  mkdir -p "$app/files/bin"
  printf '[Application]\nname=%s\nruntime=%s/%s/stable\nsdk=%s/%s/stable\n' \
    "$APP" "$RUNTIME" "$ARCH" "$RUNTIME" "$ARCH" > "$app/metadata"
  printf '#!/bin/sh\necho "%s"\n' "$APP" > "$app/files/bin/hello.sh"
  chmod +x "$app/files/bin/hello.sh"
  flatpak build-finish --command=hello.sh "$app" >/dev/null
  flatpak build-export --collection-id="$APP_COLLECTION" "${sign[@]}" --no-update-summary \
    --disable-sandbox "$SCENE/repo" "$app" stable >/dev/null
  flatpak build-update-repo "${sign[@]}" "$SCENE/repo" >/dev/null
  ( bench_flatpak_env "$MAKER"
    flatpak --user remote-add --gpg-import="$SCENE/vendor.gpg" \
      --collection-id="$APP_COLLECTION" "$REMOTE" "file://$SCENE/repo"
    flatpak --user install -y --noninteractive "$REMOTE" "$APP" >/dev/null )
  rm -rf "$rt" "$app"
  echo "$stamp" > "$SCENE.stamp"
}

cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then
    umount "$MNT" 2>/dev/null || fusermount -u "$MNT" 2>/dev/null || true
  fi
  if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || true; fi
  rm -f "$IMAGE"
}
trap cleanup EXIT

# unmount_drive: whatever is mounted on MNT, kernel or FUSE, and the loop device.
unmount_drive() {
  if mountpoint -q "$MNT"; then
    umount "$MNT" 2>/dev/null || fusermount -u "$MNT"
  fi
  if [ -n "$LOOP" ]; then losetup -d "$LOOP"; LOOP=; fi
}

# fresh_drive KIND: a new, empty filesystem of KIND (ext4, fat32, exfat) on MNT.
fresh_drive() {
  unmount_drive
  rm -f "$IMAGE"; truncate -s "${IMAGE_MIB}M" "$IMAGE"
  mkdir -p "$MNT"
  case $1 in
    ext4)
      LOOP=$(losetup --find --show "$IMAGE")
      mkfs.ext4 -q -F "$LOOP"
      mount "$LOOP" "$MNT" ;;
    fat32)
      mkfs.vfat -F 32 "$IMAGE" >/dev/null
      fusefat -o rw+ "$IMAGE" "$MNT" ;;
    exfat)
      LOOP=$(losetup --find --show "$IMAGE")
      mkfs.exfat "$LOOP" >/dev/null
      mount.exfat-fuse "$LOOP" "$MNT" ;;
    *) bench_die "unknown drive kind $1" ;;
  esac
}

# check_drive CASE: the drive carries the OS and the app as collection refs.
check_drive() {
  local refs
  refs=$(ostree --repo="$MNT/.ostree/repo" refs --collections) \
    || bench_die "$1: the drive has no readable repository"
  grep -q "($OS_COLLECTION, $OS_REF)" <<<"$refs" || bench_die "$1: the OS is not on the drive"
  grep -q "($APP_COLLECTION, app/$APP/$ARCH/stable)" <<<"$refs" \
    || bench_die "$1: the app is not on the drive"
  grep -q "($APP_COLLECTION, runtime/$RUNTIME/$ARCH/stable)" <<<"$refs" \
    || bench_die "$1: the runtime is not on the drive"
}

# Ferry: the OS from the sysroot, every app of the maker's installation with its runtime.
ferry_prepare() {
  bench_time "$1" "$FERRYCTL" prepare-drive "$MNT" --sysroot "$SYSROOT" \
    --installation "$MAKER/home/share/flatpak"
  check_drive "$1"
}
setup_ferry() { fresh_drive ext4; }
run_ferry() {
  ferry_prepare ferry
  du -sb "$MNT/.ostree" | cut -f1 > "$BENCH_DIR/prepare-bytes"
}
setup_ferry_fat32() { fresh_drive fat32; }
run_ferry_fat32() { ferry_prepare ferry_fat32; }
setup_ferry_exfat() { fresh_drive exfat; }
run_ferry_exfat() { ferry_prepare ferry_exfat; }

# The stock tools, one after the other, in one timed shell.
setup_stock() { fresh_drive ext4; }
run_stock() {
  ( bench_flatpak_env "$MAKER"
    bench_time stock sh -c '
      ostree --repo="$1/ostree/repo" create-usb "$2" "$3" "$4" &&
      flatpak --user create-usb "$2" "$5"' \
      stock-create-usb "$SYSROOT" "$MNT" "$OS_COLLECTION" "$OS_REF" "$APP" )
  check_drive stock
}

# The archive-source case: the same OS commit in a sysroot whose repository is an archive
# (as a mirror's or another drive's is), made once from the bare one. Ferry copies its
# objects as stored; so does `ostree create-usb` of this libostree.
ARCHIVE_SYSROOT=$SCENE/archive-sysroot
archive_scene() {
  local stamp commit
  stamp="$(cat "$SCENE.stamp") archive"
  bench_stale "$ARCHIVE_SYSROOT" "$stamp" || return 0
  mkdir -p "$ARCHIVE_SYSROOT"
  ostree admin init-fs "$ARCHIVE_SYSROOT" >/dev/null
  ostree admin os-init --sysroot="$ARCHIVE_SYSROOT" "$OS_NAME" >/dev/null
  rm -rf "$ARCHIVE_SYSROOT/ostree/repo"
  ostree init --mode=archive --repo="$ARCHIVE_SYSROOT/ostree/repo"
  ostree --repo="$ARCHIVE_SYSROOT/ostree/repo" remote add --no-gpg-verify \
    --collection-id="$OS_COLLECTION" "$OS_NAME" "file:///nonexistent"
  commit=$(ostree --repo="$SYSROOT/ostree/repo" rev-parse "$OS_NAME:$OS_REF")
  echo "bench: compressing the OS into an archive sysroot (~10 s)" >&2
  ostree --repo="$ARCHIVE_SYSROOT/ostree/repo" pull-local --remote="$OS_NAME" \
    "$SYSROOT/ostree/repo" "$commit" >/dev/null
  ostree --repo="$ARCHIVE_SYSROOT/ostree/repo" refs --create="$OS_NAME:$OS_REF" "$commit"
  ostree admin deploy --sysroot="$ARCHIVE_SYSROOT" --os="$OS_NAME" --karg=root=LABEL=ROOT \
    "$OS_NAME:$OS_REF" >/dev/null
  echo "$stamp" > "$ARCHIVE_SYSROOT.stamp"
}
check_os_drive() {
  ostree --repo="$MNT/.ostree/repo" refs --collections | grep -q "($OS_COLLECTION, $OS_REF)" \
    || bench_die "$1: the OS is not on the drive"
}
setup_ferry_archive() { fresh_drive ext4; }
run_ferry_archive() {
  bench_time ferry_archive "$FERRYCTL" prepare-drive "$MNT" --sysroot "$ARCHIVE_SYSROOT" --os
  check_os_drive ferry_archive
}
setup_stock_archive() { fresh_drive ext4; }
run_stock_archive() {
  bench_time stock_archive ostree --repo="$ARCHIVE_SYSROOT/ostree/repo" create-usb "$MNT" \
    "$OS_COLLECTION" "$OS_REF"
  check_os_drive stock_archive
}

# The limit: one file of the bytes Ferry wrote, then sync.
setup_raw() { fresh_drive ext4; }
run_raw() {
  local mib=$(( ($(cat "$BENCH_DIR/prepare-bytes") + 1048575) / 1048576 ))
  bench_time raw dd if=/dev/zero of="$MNT/raw" bs=1M count="$mib" status=none
}

# The reads a bare-source run cannot avoid, both cold, 8 `cat`s at once (the reads in flight
# Ferry keeps): the source's objects (the sysroot's repository and the maker's installation),
# and the objects on a drive Ferry wrote, which it reads back from the device. Here the drive
# image and the source share one disk, so these two add up.
read_all() { find "$@" -type f -print0 | xargs -0 -P 8 -n 256 cat > /dev/null; }
setup_read_source() { :; }
run_read_source() {
  bench_time read_source bash -c "$(declare -f read_all); read_all \"\$@\"" read_source \
    "$SYSROOT/ostree/repo/objects" "$MAKER/home/share/flatpak/repo/objects"
}
setup_read_drive() {
  fresh_drive ext4
  "$FERRYCTL" prepare-drive "$MNT" --sysroot "$SYSROOT" \
    --installation "$MAKER/home/share/flatpak" >/dev/null
}
run_read_drive() {
  bench_time read_drive bash -c "$(declare -f read_all); read_all \"\$1\"" read_drive \
    "$MNT/.ostree/repo/objects"
}

scene
archive_scene
bench_alternate "$BENCH_RUNS" ferry stock
bench_alternate "$BENCH_RUNS" ferry_archive stock_archive
bench_alternate "$BENCH_RUNS" raw read_source read_drive
cases=(ferry stock ferry_archive stock_archive raw read_source read_drive)
if [ "$PREPARE_FUSE" = 1 ]; then
  if command -v fusefat >/dev/null && command -v mkfs.vfat >/dev/null; then
    bench_alternate "$BENCH_RUNS" ferry_fat32; cases+=(ferry_fat32)
  else
    echo "bench: fusefat or mkfs.vfat missing; no FAT32 figure" >&2
  fi
  if command -v mount.exfat-fuse >/dev/null && command -v mkfs.exfat >/dev/null; then
    bench_alternate "$BENCH_RUNS" ferry_exfat; cases+=(ferry_exfat)
  else
    echo "bench: exfat-fuse or mkfs.exfat missing; no exFAT figure" >&2
  fi
fi
unmount_drive

bench_report "${cases[@]}"
bytes=$(cat "$BENCH_DIR/prepare-bytes")
speedup=$(bench_ratio stock ferry)
archive_speedup=$(bench_ratio stock_archive ferry_archive)
limit=$(bench_ratio raw ferry)
rss=$(bench_peak_rss_mib ferry)
for case in "${cases[@]}"; do
  case $case in raw|read_*) continue ;; esac
  echo "$case: $(awk -v b="$bytes" -v s="$(bench_median "$case")" \
    'BEGIN { printf "%.1f", b / 1048576 / s }') MiB/s for $bytes bytes on the drive"
done
echo "raw write (dd + sync): $(awk -v b="$bytes" -v s="$(bench_median raw)" \
  'BEGIN { printf "%.1f", b / 1048576 / s }') MiB/s"
echo "ferry is ${speedup}x as fast as ostree + flatpak create-usb (target >= 5)"
echo "archive source (the OS only): ferry is ${archive_speedup}x as fast as ostree create-usb (target >= 10)"
echo "ferry reaches ${limit} of the raw write rate (dd time / ferry time)"
reads=$(awk -v a="$(bench_median read_source)" -v b="$(bench_median read_drive)" \
  'BEGIN { printf "%.2f", a + b }')
echo "cold reads alone: the source $(bench_median read_source) s + the drive's objects" \
  "$(bench_median read_drive) s = $reads s; the stock time over that: $(awk -v s="$(bench_median stock)" \
  -v r="$reads" 'BEGIN { printf "%.2f", s / r }')x (the most a run that reads back can reach here)"
echo "ferry peak RSS: $rss MiB (target <= 128)"
missed=0
awk -v r="$speedup" 'BEGIN { exit !(r >= 5) }' || missed=1
awk -v r="$archive_speedup" 'BEGIN { exit !(r >= 10) }' || missed=1
awk -v r="$rss" 'BEGIN { exit !(r <= 128) }' || missed=1
exit $((missed ? 3 : 0))
