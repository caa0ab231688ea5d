#!/bin/bash
# Regenerates the seed corpus in fuzz/corpus/<target>/ from real tools: objects of a tiny
# gpg-signed ostree repository (archive and bare-user), its summary, TXT records as
# `ferryctl serve` advertises them, the example ferry.conf, and recorded drive records and
# `ferryctl install --json` streams. The files are checked in; run this only to refresh them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
corpus=$root/fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Fuzz Seed <fuzz@example.org>' ed25519 sign never
key=$(gpg --batch --list-keys --with-colons | awk -F: '/^fpr/ {print $10; exit}')

mkdir -p "$work/tree/usr/share/doc" "$work/tree/etc"
printf 'hello\n' >"$work/tree/usr/share/doc/README"
head -c 3000 /dev/urandom | base64 >"$work/tree/etc/data.txt"
ln -s ../usr/share/doc/README "$work/tree/etc/readme-link"
chmod 0750 "$work/tree/etc"

repo=$work/repo
ostree init --repo="$repo" --mode=archive --collection-id=org.example.Fuzz
ostree commit --repo="$repo" --branch=os/x86_64/stable --tree=dir="$work/tree" \
  --subject='seed commit' --add-metadata-string=version=1.0 \
  --add-detached-metadata-string=note=seed --gpg-sign="$key" --gpg-homedir="$GNUPGHOME" >/dev/null
ostree commit --repo="$repo" --branch=os/x86_64/stable --tree=dir="$work/tree" \
  --subject='second' --body='with a parent' --add-metadata-string=version=1.1 >/dev/null
ostree summary --repo="$repo" -u --add-metadata=ostree.summary.expires="uint64 1800000000" \
  --gpg-sign="$key" --gpg-homedir="$GNUPGHOME"

rm -rf "$corpus"
mkdir -p "$corpus"
seed() {  # seed TARGET NAME FILE: copies one seed
  mkdir -p "$corpus/$1"
  cp "$3" "$corpus/$1/$2"
}
n=0
for object in $(find "$repo/objects" -type f | sort); do
  n=$((n + 1))
  case $object in
    *.commit) seed commit "$n.commit" "$object" ;;
    *.dirtree) seed dirtree "$n.dirtree" "$object" ;;
    *.dirmeta) seed dirmeta "$n.dirmeta" "$object" ;;
    *.commitmeta) seed commitmeta "$n.commitmeta" "$object" ;;
    *.filez) seed filez "$n.filez" "$object" ;;
  esac
done
seed summary summary "$repo/summary"
seed commitmeta summary.sig "$repo/summary.sig"
# Static delta superblocks: one with its part inline (from scratch), one with a part file.
ostree static-delta generate --repo="$repo" --empty --inline --to=os/x86_64/stable >/dev/null
ostree static-delta generate --repo="$repo" --from=os/x86_64/stable^ --to=os/x86_64/stable >/dev/null
n=0
for superblock in $(find "$repo/deltas" -name superblock | sort); do
  n=$((n + 1))
  seed delta "$n.superblock" "$superblock"
done

# bare-user objects keep their header in user.ostreemeta; the seed is the content size
# (8 bytes, little-endian) and that xattr.
bare=$work/bare
ostree init --repo="$bare" --mode=bare-user
ostree pull-local --repo="$bare" "$repo" os/x86_64/stable >/dev/null
n=0
for object in $(find "$bare/objects" -name '*.file' | sort); do
  n=$((n + 1))
  size=$(stat -c %s "$object")
  mkdir -p "$corpus/content_header"
  python3 - "$size" "$object" "$corpus/content_header/$n.ostreemeta" <<'EOF'
import os, struct, sys
size, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
meta = os.getxattr(path, "user.ostreemeta", follow_symlinks=False)
open(out, "wb").write(struct.pack("<Q", size) + meta)
EOF
done

# TXT records in DNS-SD wire form, as `ferryctl serve` and libostree advertise them:
# v=1, ri (u16 BE), st (u64 BE).
mkdir -p "$corpus/txt"
python3 - "$corpus/txt" <<'EOF'
import struct, sys
def wire(records):
    return b"".join(bytes([len(r)]) + r for r in records)
out = sys.argv[1]
open(f"{out}/advertised", "wb").write(wire([b"v=\x01", b"ri=" + struct.pack(">H", 0), b"st=" + struct.pack(">Q", 1700000000)]))
open(f"{out}/no-st", "wb").write(wire([b"v=\x01", b"ri=" + struct.pack(">H", 3)]))
EOF

seed policy ferry.conf data/ferry.conf
printf 'on-insert = install\nreboot-after-os-update = never\nmount = always\n' >"$work/kiosk.conf"
seed policy kiosk.conf "$work/kiosk.conf"

# A record the hook writes for a drive (a tmpfs holding the repository), next to the
# recorded ones the app's tests use.
hook=${FERRY_HOOK:-target/debug/ferry-hook}
ferryctl=${FERRY_CTL:-target/debug/ferryctl}
if [ -x "$hook" ] && [ -x "$ferryctl" ]; then
  mkdir -p "$work/drive" "$work/run"
  mount -t tmpfs -o size=16m tmpfs "$work/drive"
  trap 'umount "$work/drive" 2>/dev/null; rm -rf "$work"' EXIT
  mkdir -p "$work/drive/ostree"
  cp -a "$repo" "$work/drive/ostree/repo"
  FERRY_RUN_DIR=$work/run FERRY_CTL=$root/$ferryctl FERRY_ACCEPT_FIXED_DRIVES=1 \
    FERRY_CONFIG=/nonexistent "$hook" --mount "$work/drive" 2>/dev/null
  seed drive_record hook-written.json "$(ls "$work"/run/drives/*.json)"
  umount "$work/drive"
else
  echo "no $hook or $ferryctl: build them for a hook-written drive record" >&2
fi
for record in gui/tests/data/drives/*.json; do
  seed drive_record "$(basename "$record")" "$record"
done

# The events entry reads its first byte as the line limit and buffer size; 0xff gives the
# largest limit (4033 bytes) with a 22-byte buffer.
mkdir -p "$corpus/events"
for stream in install-all-ok install-cancelled install-up-to-date stream-version-2; do
  { printf '\377'; cat "gui/tests/data/streams/$stream.jsonl"; } >"$corpus/events/$stream"
done
ls -R "$corpus" | head -60
du -sh "$corpus"
