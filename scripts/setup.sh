#!/usr/bin/env bash
# Set up the control machine: Debian packages from requirements/apt*.txt, then the pinned Python
# toolchain in .venv (and the app's own environment when app/ ships one). Safe to run any number
# of times: it installs only what is missing, and says so when there was nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: needs root (it installs Debian packages and the lab needs root). Run: sudo make setup" >&2
  exit 1
fi

packages=$(cat requirements/apt*.txt | sed -e 's/#.*//' | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: Debian packages present"
fi

# A Debian package may start its service on install (postgresql, transmission-daemon); the suite
# starts its own throwaway instances, so a system-wide one is only noise. Nothing to stop here on
# a machine without systemd as PID 1.

python=${PYTHON:-python3}
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

ensure_venv() {  # ensure_venv DIR REQUIREMENTS... : (re)install only when the pins changed
  local dir=$1; shift
  local want; want=$(stamp_of "$@")
  if [ -f "$dir/.pins" ] && [ "$(cat "$dir/.pins")" = "$want" ]; then
    echo "setup: $dir up to date"
    return
  fi
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  echo "setup: installing into $dir from $*"
  local args=()
  for r in "$@"; do args+=(-r "$r"); done
  "$dir/bin/pip" install -q --disable-pip-version-check "${args[@]}"
  echo "$want" > "$dir/.pins"
}

ensure_venv .venv requirements/control.txt
# The suite's own library (fetchfleet/), importable by fab tasks and tests.
# Checked from / (the checkout itself would be on sys.path as the current directory) and against
# this checkout's path (a .venv copied from another clone points elsewhere).
(cd / && "$OLDPWD/.venv/bin/python" -c 'import fetchfleet, sys; sys.exit(not fetchfleet.__file__.startswith(sys.argv[1]))' "$OLDPWD/") 2>/dev/null ||
  .venv/bin/pip install -q --no-deps -e . >/dev/null
if [ -f app/requirements.lock ]; then
  ensure_venv .venv-app app/requirements.lock app/requirements-test.txt
  .venv-app/bin/pip install -q --no-deps -e app >/dev/null
fi
echo "setup: done"
