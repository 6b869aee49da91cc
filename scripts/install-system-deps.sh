#!/usr/bin/env bash
# System packages the tests run for real, one a line with why. Installed with apt-get when we
# are root; otherwise we say what is missing. (One a line, so streams of work adding packages
# do not collide.)
set -euo pipefail
packages=(
  chromium chromium-driver   # browser tests (Playwright drives Debian's Chromium)
  fonts-liberation           # Arial's metrics, so pages render as partners see them
  postgresql                 # storage tests on a real PostgreSQL (scripts/start-postgres.sh)
  libemail-mime-perl         # a second, independent reader of the messages we send
  spamassassin               # the message must not look like spam
  dovecot-imapd              # the bounce mailbox over IMAP (tests start their own on 127.0.0.1)
  nginx                      # the documented proxy in front of the tracker (tests run their own)
  zbar-tools                 # zbarimg: an independent decoder reads back the share kit's QR codes
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests run Dovecot themselves; where the package started the system's service (it
  # would listen on every address), stop it.
  if [[ " ${missing[*]} " == *" dovecot-imapd "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now dovecot >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
