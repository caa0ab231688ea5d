#!/bin/bash
# Ferry's translations: one gettext domain, "ferry", for the desktop app, ferryctl's human
# output, and the desktop, AppStream and polkit files.
#
# Usage (from anywhere; paths are relative to the repository):
#   scripts/i18n.sh potfiles [FILE]   regenerate po/POTFILES (or write FILE): every .rs file
#                                     under gui/src and cli/src that calls a translation
#                                     function, then the data templates
#   scripts/i18n.sh pot [FILE]        regenerate po/ferry.pot (or write FILE) from po/POTFILES
#   scripts/i18n.sh update            msgmerge po/ferry.pot into every po/LANG.po
#   scripts/i18n.sh check             msgfmt --check every catalogue; fails on untranslated or
#                                     fuzzy messages
#   scripts/i18n.sh compile OUTDIR    OUTDIR/LANG/LC_MESSAGES/ferry.mo for each LANG in
#                                     po/LINGUAS (install OUTDIR/* under $(datadir)/locale)
#   scripts/i18n.sh merge OUTDIR      translated data files:
#                                       OUTDIR/applications/io.github.ferry.Ferry.desktop
#                                       OUTDIR/autostart/io.github.ferry.Ferry.Agent.desktop
#                                       OUTDIR/metainfo/io.github.ferry.Ferry.metainfo.xml
#                                       OUTDIR/polkit/io.github.ferry.Ferry.policy
#                                     With BINDIR=/some/bin in the environment, the policy's
#                                     exec.path names $BINDIR/ferryctl (default /usr/bin).
#   scripts/i18n.sh all OUTDIR        compile into OUTDIR/locale, and merge into OUTDIR
#
# A system install runs `scripts/i18n.sh all BUILDDIR` and copies BUILDDIR/applications to
# $(datadir)/applications, BUILDDIR/autostart to /etc/xdg/autostart, BUILDDIR/metainfo to
# $(datadir)/metainfo, BUILDDIR/polkit to $(datadir)/polkit-1/actions and BUILDDIR/locale to
# $(datadir)/locale.
#
# Rust sources are extracted with xgettext's C parser, which reads Rust's strings, calls and
# comments the same way (xgettext only parses Rust itself from gettext 0.24 on; Debian 12 has
# 0.21, and one parser everywhere keeps the .pot identical on every machine). Lifetimes such
# as 'static look like unterminated character constants to it, so they are blanked in a
# scratch copy first; line numbers stay the same.
#
# Keywords: tr, trf (gui and cli), ntr:1,2 and ntrf:1,2 (plurals), and gettext's own names.
# Comments starting with "Translators:" right before a call reach the translators.
set -euo pipefail

ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PO="$ROOT/po"
DOMAIN=ferry
BUGS="https://github.com/ferry-updates/ferry/issues"
KEYWORDS=(--keyword=tr --keyword=trf --keyword=ntr:1,2 --keyword=ntrf:1,2
  --keyword=gettext --keyword=ngettext:1,2 --keyword=pgettext:1c,2 --keyword=npgettext:1c,2,3)
DATA_TEMPLATES=(
  data/applications/io.github.ferry.Ferry.desktop.in
  data/applications/io.github.ferry.Ferry.Agent.desktop.in
  data/metainfo/io.github.ferry.Ferry.metainfo.xml.in
  data/polkit/io.github.ferry.Ferry.policy.in
)

die() { echo "i18n.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing: install gettext (scripts/install-deps.sh)"; }
languages() { grep -v '^[[:space:]]*\(#\|$\)' "$PO/LINGUAS"; }

potfiles() {
  local out=${1:-$PO/POTFILES}
  {
    echo "# Files with translatable strings, in extraction order. Regenerate with"
    echo "# scripts/i18n.sh potfiles; a test fails when this list is stale."
    (cd "$ROOT" && grep -rlE --include='*.rs' '\b(tr|trf|ntr|ntrf|gettext|ngettext|pgettext)\(' gui/src cli/src | LC_ALL=C sort)
    printf '%s\n' "${DATA_TEMPLATES[@]}"
  } >"$out"
}

pot() {
  need xgettext; need perl
  local out=${1:-$PO/$DOMAIN.pot}
  local scratch
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  local rust=() desktop=() xml=()
  while IFS= read -r file; do
    case $file in
      ''|'#'*) ;;
      *.rs) rust+=("$file") ;;
      *.desktop.in) desktop+=("$file") ;;
      *.xml.in|*.policy.in) xml+=("$file") ;;
      *) die "po/POTFILES: do not know how to extract $file" ;;
    esac
  done <"$PO/POTFILES"
  for file in "${rust[@]}"; do
    [ -f "$ROOT/$file" ] || die "po/POTFILES lists $file, which does not exist: run scripts/i18n.sh potfiles"
    mkdir -p "$scratch/$(dirname "$file")"
    # Keep strings, character literals and comments; blank lifetimes ('a, 'static).
    perl -0777 -pe 's{("(?:[^"\\]|\\.)*")|(//[^\n]*)|(b?'"'"'(?:[^'"'"'\\\n]|\\[^\n]*?)'"'"')|'"'"'([A-Za-z_]\w*)}{defined $1 ? $1 : defined $2 ? $2 : defined $3 ? $3 : " " x (1 + length $4)}ge' \
      "$ROOT/$file" >"$scratch/$file"
  done
  # File names without line numbers: moving code around does not make the template stale.
  local common=(--from-code=UTF-8 --package-name="$DOMAIN" --msgid-bugs-address="$BUGS"
    --add-comments=Translators: --add-location=file --output="$scratch/$DOMAIN.pot")
  (cd "$scratch" && xgettext "${common[@]}" --language=C "${KEYWORDS[@]}" "${rust[@]}")
  (cd "$ROOT" && xgettext "${common[@]}" --join-existing --language=Desktop "${desktop[@]}")
  (cd "$ROOT" && xgettext "${common[@]}" --join-existing "${xml[@]}")
  # xgettext leaves the charset open in a fresh template; every source is UTF-8.
  sed -i 's/charset=CHARSET/charset=UTF-8/' "$scratch/$DOMAIN.pot"
  cp "$scratch/$DOMAIN.pot" "$out"
}

update() {
  need msgmerge
  for lang in $(languages); do
    msgmerge --quiet --update --backup=none --add-location=file "$PO/$lang.po" "$PO/$DOMAIN.pot"
  done
}

check() {
  need msgfmt
  local failed=0
  for lang in $(languages); do
    local stats
    stats=$(msgfmt --check --statistics -o /dev/null "$PO/$lang.po" 2>&1) || { echo "$stats" >&2; failed=1; continue; }
    echo "$lang: $stats"
    case $stats in *fuzzy*|*untranslated*) failed=1 ;; esac
  done
  return $failed
}

compile() {
  need msgfmt
  local out=${1:?compile needs an output directory}
  for lang in $(languages); do
    mkdir -p "$out/$lang/LC_MESSAGES"
    msgfmt --check -o "$out/$lang/LC_MESSAGES/$DOMAIN.mo" "$PO/$lang.po"
  done
}

merge() {
  need msgfmt
  local out=${1:?merge needs an output directory}
  local bindir=${BINDIR:-/usr/bin}
  mkdir -p "$out/applications" "$out/autostart" "$out/metainfo" "$out/polkit"
  msgfmt --desktop -d "$PO" --template="$ROOT/data/applications/io.github.ferry.Ferry.desktop.in" \
    -o "$out/applications/io.github.ferry.Ferry.desktop"
  msgfmt --desktop -d "$PO" --template="$ROOT/data/applications/io.github.ferry.Ferry.Agent.desktop.in" \
    -o "$out/autostart/io.github.ferry.Ferry.Agent.desktop"
  msgfmt --xml -d "$PO" --template="$ROOT/data/metainfo/io.github.ferry.Ferry.metainfo.xml.in" \
    -o "$out/metainfo/io.github.ferry.Ferry.metainfo.xml"
  msgfmt --xml -d "$PO" --template="$ROOT/data/polkit/io.github.ferry.Ferry.policy.in" \
    -o "$out/polkit/io.github.ferry.Ferry.policy.tmp"
  sed "s|>/usr/bin/ferryctl<|>$bindir/ferryctl<|" "$out/polkit/io.github.ferry.Ferry.policy.tmp" \
    >"$out/polkit/io.github.ferry.Ferry.policy"
  rm -f "$out/polkit/io.github.ferry.Ferry.policy.tmp"
}

case ${1:-} in
  potfiles) potfiles "${2:-}" ;;
  pot) pot "${2:-}" ;;
  update) update ;;
  check) check ;;
  compile) compile "${2:-}" ;;
  merge) merge "${2:-}" ;;
  all)
    [ -n "${2:-}" ] || die "all needs an output directory"
    compile "$2/locale"
    merge "$2"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
