#!/usr/bin/env bash
# What the benchmarks compare against (not needed by the tests): npm's mjml (bench_build),
# Postfix's smtp-sink/smtp-source (bench_send), wrk and nginx (bench_tracker).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v smtp-sink >/dev/null || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "Install: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
if [ ! -x .bench-tools/node_modules/.bin/mjml ]; then
  npm install --silent --no-audit --no-fund --prefix .bench-tools mjml >/dev/null
fi
