#!/usr/bin/env bash
# The main job on embedded defaults: build the sample issue.
set -euo pipefail
newsletter build issues/2026-spring.yaml
