#!/bin/sh
# Stands in for ferryctl in the UI tests: records how it was called, then replays a recorded
# `ferryctl install --json` stream. It reads its settings, on every run, from the file named
# by FAKE_CTL_CONFIG (shell assignments), so a test can change them between installs:
#   FAKE_CTL_ARGS         file to append the arguments to, one per line, then "--"
#   FAKE_CTL_STREAM       the recorded stream to print
#   FAKE_CTL_PAUSE_AFTER  print this many lines, then wait for a line on FAKE_CTL_GATE (a FIFO)
#   FAKE_CTL_EXIT         exit status (default 0)
#   FAKE_CTL_DIE          1: end by SIGKILL, like a child that crashes mid-stream
#   FAKE_CTL_SHARING      file holding yes or no: `sharing on|off` write it, `sharing status`
#                         reports it (with 3 computers today when on)
#   FAKE_CTL_HISTORY      file `history --json` prints; `rollback` then exits FAKE_CTL_EXIT
set -eu
. "$FAKE_CTL_CONFIG"
for arg in "$@"; do printf '%s\n' "$arg"; done >>"$FAKE_CTL_ARGS"
echo -- >>"$FAKE_CTL_ARGS"
if [ "${1:-}" = sharing ] && [ -n "${FAKE_CTL_SHARING:-}" ]; then
  case "${2:-}" in
    on) echo yes >"$FAKE_CTL_SHARING" ;;
    off) echo no >"$FAKE_CTL_SHARING" ;;
    status)
      if [ "$(cat "$FAKE_CTL_SHARING" 2>/dev/null)" = yes ]; then
        echo '{"enabled":true,"running":true,"computers_today":3,"bytes_today":52000000}'
      else
        echo '{"enabled":false,"running":false,"computers_today":0,"bytes_today":0}'
      fi ;;
  esac
  exit 0
fi
if [ -n "${FAKE_CTL_HISTORY:-}" ]; then
  case "${1:-}" in
    history) cat "$FAKE_CTL_HISTORY"; exit 0 ;;
    rollback) exit "${FAKE_CTL_EXIT:-0}" ;;
  esac
fi
if [ -n "${FAKE_CTL_PAUSE_AFTER:-}" ]; then
  head -n "$FAKE_CTL_PAUSE_AFTER" "$FAKE_CTL_STREAM"
  read -r _ <"$FAKE_CTL_GATE"
  tail -n "+$((FAKE_CTL_PAUSE_AFTER + 1))" "$FAKE_CTL_STREAM"
else
  cat "$FAKE_CTL_STREAM"
fi
if [ "${FAKE_CTL_DIE:-0}" = 1 ]; then
  echo "error: the drive went away" >&2
  kill -KILL $$
fi
exit "${FAKE_CTL_EXIT:-0}"
