#!/usr/bin/env bash
# Refresh requirements/control.txt, the control machine's lock: every package of the closure of
# requirements/control.in (the one file where pins are added), each with the sha256 of every file
# PyPI has for it. `make setup` installs the lock with --require-hashes.
# Pins already in the lock are kept (uv prefers them), so adding a pin to control.in moves only
# what it needs; to move others, pass uv's own options:
#   requirements/lock.sh --upgrade-package boto3      requirements/lock.sh --upgrade
# Resolved for the control machine's Python (Debian 12: 3.11, x86_64 Linux), whatever runs this.
set -euo pipefail
cd "$(dirname "$0")"
uv=${UV:-../.venv/bin/uv}
if [ ! -x "$uv" ]; then
  echo "lock: $uv missing: run \`make setup\` (requirements/control.in pins uv)" >&2
  exit 1
fi
"$uv" pip compile --quiet --generate-hashes --python-version 3.11 \
  --python-platform x86_64-unknown-linux-gnu --custom-compile-command "requirements/lock.sh" \
  "$@" control.in -o control.txt
