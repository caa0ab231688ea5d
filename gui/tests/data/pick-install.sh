#!/bin/sh
# dunst's context menu runs this instead of dmenu in the UI tests: it logs the entries dunst
# offers to PICK_LOG and chooses the one for the Install action.
tee "$PICK_LOG" | grep -m1 'Install'
