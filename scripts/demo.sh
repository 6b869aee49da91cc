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
