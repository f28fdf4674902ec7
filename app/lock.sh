#!/usr/bin/env bash
# Refresh the app's two locks, every pin with the sha256 of each file PyPI has for it:
#   requirements.lock       the runtime closure of pyproject.toml (what a release ships)
#   requirements-test.txt   what the tests add (requirements-test.in), within the runtime pins
# Pins already in a lock are kept (uv prefers them); to move some, pass uv's own options:
#   app/lock.sh --upgrade-package flask      app/lock.sh --upgrade
# Resolved for the hosts' Python (Debian 12: 3.11, x86_64 Linux), whatever runs this.
set -euo pipefail
cd "$(dirname "$0")"
uv=${UV:-../.venv/bin/uv}
if [ ! -x "$uv" ]; then
  echo "lock: $uv missing: run \`make setup\` (requirements/control.txt pins uv)" >&2
  exit 1
fi
options=(
  --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
  --custom-compile-command "app/lock.sh"
)
"$uv" pip compile "${options[@]}" "$@" pyproject.toml -o requirements.lock
"$uv" pip compile "${options[@]}" "$@" requirements-test.in --constraint requirements.lock \
  -o requirements-test.txt
