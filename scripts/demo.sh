#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults (SQLite, the Maildir adapter).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1. Check and build the sample issue"
newsletter check issues/2026-spring.yaml
newsletter build issues/2026-spring.yaml
echo
echo "   Open the email in a browser:  newsletter build issues/2026-spring.yaml --open"
echo "   Preview while you edit (live reload):  newsletter preview issues/2026-spring.yaml"
echo

echo "== 2. Send the sample issue to the sample lists (Maildir adapter: nothing leaves this machine)"
newsletter audiences check
newsletter send 2026-spring --yes \
  --to kscmp --to kmsab --to kent-county-council --to medway-council --to kent-police \
  --to kent-fire-rescue --to district-councils --to health-partners \
  --to counter-terrorism-policing
echo
echo "   The messages are in $(pwd)/maildir/new ($(ls maildir/new | wc -l) files): open the"
echo "   folder with any Maildir reader (e.g. mutt -f maildir) or read one with: ls maildir/new"
echo "   Running the demo again resumes the same send: nobody gets a second copy."
echo
