#!/bin/bash
# `ferry-hook --mount DRIVE` (on-insert = notify) on a drive holding an OS update of about
# 100,000 objects. Targets: median wall time <= 1 s and peak RSS <= 32 MiB; the script exits
# non-zero when either is exceeded.
#
# Setup (generated once into HOOK_BENCH_CACHE, default target/bench-cache/hook, and reused):
#   - an ed25519 GPG key, and a vendor archive repository (collection org.example.Os) with a
#     small bootable v1.0 and a signed v2.0 adding 100,000 small files of distinct content in
#     1,000 folders (about 101,000 objects), with a signed summary;
#   - the machine: a fake sysroot (`ostree admin init-fs/os-init/deploy`) at v1.0, its remote
#     trusting the vendor key, named to the hook by OSTREE_SYSROOT; Flatpak directories empty;
#   - the drive: `ostree create-usb` of v2.0.
#
# Each timed run is a first insertion: the hook's runtime directory is empty. The hook scans
# the drive, checks the commit's signature against the machine's remote and resolves the
# update, without walking the objects (that happens at pull time).
#
# Compared with the closest check the stock tools do (case `ostree`): list the drive's
# collection refs (`ostree refs --collections`), read the offered commit from the drive's
# summary (`ostree summary --view`, as Flatpak's sideloading reads drives), verify that
# commit's signature with the machine remote's keyring (`ostree show --gpg-homedir`), and read
# the installed commit (`ostree rev-parse` in the sysroot). It writes no record and resolves
# nothing, so it is a lower bound for what the hook does.
#
# Environment: BENCH_RUNS (default 7), BENCH_DROP (default 1 as root: cold page cache before
# every run, as for a freshly inserted drive), BENCH_DIR, HOOK_BENCH_CACHE, HOOK_BENCH_FILES
# (default 100000; smaller for a quick check of the script itself).
set -euo pipefail
BENCH_RUNS=${BENCH_RUNS:-7}
. "$(dirname "$0")/lib.sh"
bench_init
(cd "$BENCH_ROOT" && cargo build --release --quiet -p ferry-hook) \
  || bench_die "cargo build --release -p ferry-hook failed"
FERRY_HOOK=${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/release/ferry-hook

FILES=${HOOK_BENCH_FILES:-100000}
LIMIT_SECONDS=1
LIMIT_RSS_MIB=32
COLLECTION=org.example.Os
OS=exampleos
REF=exampleos/x86_64/stable
CACHE=${HOOK_BENCH_CACHE:-$BENCH_ROOT/target/bench-cache/hook}
STAMP="files=$FILES v1"

setup_scene() {
  bench_stale "$CACHE" "$STAMP" || return 0
  local vendor=$CACHE/osrepo data=$CACHE/osdata
  bench_signed_repo "$CACHE" 'OS Vendor <os@example.org>' "$vendor" $COLLECTION
  mkdir -p "$data/usr/bin" "$data/usr/lib/modules/6.1.0" "$data/usr/etc"
  echo "a kernel" > "$data/usr/lib/modules/6.1.0/vmlinuz"
  echo "an initramfs" > "$data/usr/lib/modules/6.1.0/initramfs.img"
  echo "an executable" > "$data/usr/bin/sh"; chmod 755 "$data/usr/bin/sh"
  printf 'NAME=ExampleOS\nID=exampleos\nVERSION_ID=1.0\n' > "$data/usr/etc/os-release"
  commit() {  # commit VERSION
    ostree --repo="$vendor" commit --bootable -b $REF -s "ExampleOS $1" \
      --add-metadata-string=version="$1" \
      --gpg-sign="$BENCH_KEY" --gpg-homedir="$GNUPGHOME" "$data" >/dev/null
    ostree --repo="$vendor" summary -u --gpg-sign="$BENCH_KEY" --gpg-homedir="$GNUPGHOME"
  }
  commit 1.0

  local sysroot=$CACHE/sysroot
  mkdir -p "$sysroot"
  ostree admin init-fs "$sysroot" >/dev/null
  ostree admin os-init --sysroot="$sysroot" $OS >/dev/null
  ostree --repo="$sysroot/ostree/repo" remote add --collection-id=$COLLECTION \
    --gpg-import="$CACHE/vendor.gpg" $OS "file://$vendor"
  ostree --repo="$sysroot/ostree/repo" pull $OS $REF >/dev/null
  ostree admin deploy --sysroot="$sysroot" --os=$OS --karg=root=LABEL=ROOT "$OS:$REF" >/dev/null

  echo "bench: writing $FILES files and committing them (a few minutes, once)" >&2
  python3 - "$data/usr/share/bench" "$FILES" <<'EOF'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    folder = os.path.join(root, "d%04d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "f%03d" % (i % 100)), "w") as f:
        f.write("bench file %d\n" % i)
EOF
  printf 'NAME=ExampleOS\nID=exampleos\nVERSION_ID=2.0\n' > "$data/usr/etc/os-release"
  commit 2.0

  mkdir -p "$CACHE/drive"
  ostree --repo="$vendor" create-usb "$CACHE/drive" $COLLECTION $REF >/dev/null
  # The machine remote's keyring, as a GnuPG home for `ostree show --gpg-homedir`.
  mkdir -m 700 -p "$CACHE/machine-keyring"
  cp "$sysroot/ostree/repo/$OS.trustedkeys.gpg" "$CACHE/machine-keyring/trustedkeys.gpg"
  gpgconf --kill gpg-agent || true
  unset GNUPGHOME
  echo "$STAMP" > "$CACHE.stamp"
}

setup_scene
DRIVE=$CACHE/drive
DRIVE_REPO=$DRIVE/.ostree/repo
SYSROOT=$CACHE/sysroot
objects=$(find "$DRIVE_REPO/objects" -type f | wc -l)
echo "bench: the drive holds $objects objects" >&2

MACHINE=$BENCH_DIR/hook-machine
mkdir -p "$MACHINE/home" "$MACHINE/flatpak-user" "$MACHINE/flatpak-system" \
  "$MACHINE/flatpak-config" "$MACHINE/trust-root"
printf 'on-insert = notify\n' > "$MACHINE/ferry.conf"
HOOK_ENV=(env OSTREE_SYSROOT="$SYSROOT" HOME="$MACHINE/home"
  FLATPAK_USER_DIR="$MACHINE/flatpak-user" FLATPAK_SYSTEM_DIR="$MACHINE/flatpak-system"
  FLATPAK_CONFIG_DIR="$MACHINE/flatpak-config" FERRY_TRUST_ROOT="$MACHINE/trust-root"
  FERRY_RUN_DIR="$MACHINE/run" FERRY_SIDELOAD_DIR="$MACHINE/sideload"
  FERRY_CONFIG="$MACHINE/ferry.conf" FERRY_LOG=warn)

# The stock tools' check, as one command so its time and peak RSS are measured like the hook's.
cat > "$MACHINE/ostree-check.sh" <<EOF
#!/bin/bash
set -euo pipefail
ostree --repo="$DRIVE_REPO" refs --collections | grep -qxF "($COLLECTION, $REF)"
commit=\$(ostree --repo="$DRIVE_REPO" summary --view | awk '\$2 == "($COLLECTION," && \$3 == "$REF)" { getline; getline; print \$1; exit }')
[ -n "\$commit" ]
ostree --repo="$DRIVE_REPO" show --gpg-homedir="$CACHE/machine-keyring" "\$commit" | grep -q "Good signature"
ostree --repo="$SYSROOT/ostree/repo" rev-parse "$OS:$REF" > /dev/null
EOF
chmod 755 "$MACHINE/ostree-check.sh"

setup_ferry() { rm -rf "$MACHINE/run" "$MACHINE/sideload"; }
run_ferry() { bench_time ferry "${HOOK_ENV[@]}" "$FERRY_HOOK" --mount "$DRIVE"; }
run_ostree() { bench_time ostree "$MACHINE/ostree-check.sh"; }

# Both must be right before they are timed.
setup_ferry
"${HOOK_ENV[@]}" "$FERRY_HOOK" --mount "$DRIVE" || bench_die "ferry-hook failed"
python3 - "$MACHINE/run/drives" "$REF" <<'EOF'
import json, os, sys
folder, ref = sys.argv[1], sys.argv[2]
records = [json.load(open(os.path.join(folder, name))) for name in os.listdir(folder)]
assert len(records) == 1, records
record = records[0]
assert not record["problems"], record["problems"]
offered = [(u["ref"], u.get("version")) for u in record["updates"]]
assert offered == [(ref, "2.0")], offered
print("bench: record checked: one update, %s 2.0, no problems" % ref, file=sys.stderr)
EOF
"$MACHINE/ostree-check.sh" || bench_die "the ostree check failed: see $MACHINE/ostree-check.sh"

bench_alternate "$BENCH_RUNS" ferry ostree
bench_report ferry ostree
median=$(bench_median ferry)
rss=$(bench_peak_rss_mib ferry)
echo "ferry-hook --mount, drive with $objects objects: median ${median} s, peak RSS ${rss} MiB (targets <= ${LIMIT_SECONDS} s, <= ${LIMIT_RSS_MIB} MiB)"
echo "stock-tool check (refs, summary, signature, installed commit): median $(bench_median ostree) s, peak RSS $(bench_peak_rss_mib ostree) MiB"
echo "time ratio ferry/ostree: $(bench_ratio ferry ostree)"
failed=0
if awk -v m="$median" -v l="$LIMIT_SECONDS" 'BEGIN { exit !(m > l) }'; then
  echo "bench: FAIL: median ${median} s is over ${LIMIT_SECONDS} s" >&2; failed=1
fi
if awk -v r="$rss" -v l="$LIMIT_RSS_MIB" 'BEGIN { exit !(r > l) }'; then
  echo "bench: FAIL: peak RSS ${rss} MiB is over ${LIMIT_RSS_MIB} MiB" >&2; failed=1
fi
exit "$failed"
