#!/usr/bin/env bash
# Set up the control machine: Debian packages from requirements/apt*.txt, then the locked Python
# toolchain in .venv (and the app's own environment when app/ ships one). Safe to run any number
# of times: it installs only what is missing, and says so when there was nothing to do.
#
#   scripts/setup.sh           check this machine, then install what is missing (`make setup`)
#   scripts/setup.sh --check   only check: say what is wrong or what would be installed; change nothing
#
# The machine is checked before anything changes: Debian 12 (the lab builds its hosts from this
# machine's apt sources), Python 3.11 (releases are built here for the hosts' Python), and root
# only when a Debian package is missing (a Jenkins controller runs setup as its own user, with the
# packages installed by roles/jenkins). The tests point the checks elsewhere with
# FETCHFLEET_OS_RELEASE (a file in os-release format), PYTHON and FETCHFLEET_APT_LISTS (a
# directory of apt*.txt lists).
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--check]" >&2; exit 64 ;;
esac
os_release=${FETCHFLEET_OS_RELEASE:-/etc/os-release}
python=${PYTHON:-python3}
apt_lists=${FETCHFLEET_APT_LISTS:-requirements}
problems=()

os_field() {  # os_field KEY: the value of KEY in os-release, unquoted
  sed -n "s/^$1=//p" "$os_release" | head -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}

python_version() {  # major.minor.micro of $python, or nothing when it does not run
  "$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}

# 1. The operating system.
if [ ! -r "$os_release" ]; then
  problems+=("cannot read $os_release to tell which system this is; fetchfleet needs Debian 12 (bookworm)")
else
  os_name=$(os_field PRETTY_NAME)
  if [ "$(os_field ID)" != debian ] || [ "$(os_field VERSION_ID)" != 12 ]; then
    problems+=("this machine runs ${os_name:-an unknown system} ($os_release); fetchfleet needs Debian 12 (bookworm): the lab builds its Debian 12 hosts from this machine's apt sources")
  fi
fi

# 2. Debian packages: which are missing, and whether this user may install them.
packages=$(cat "$apt_lists"/apt*.txt | sed -e 's/#.*//' | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  problems+=("Debian packages missing: ${missing[*]}; installing them needs root: run \`sudo make setup\` (or have an administrator run \`apt-get install ${missing[*]}\`, then \`make setup\` as $(id -un))")
fi

# 3. Python: the hosts run Debian 12's 3.11, and releases are built here for them.
py=$(python_version)
if [ -z "$py" ] && { [ "$python" != python3 ] || [ ${#missing[@]} -eq 0 ]; }; then
  # Only Debian's python3 can be missing for a good reason: python3-venv (requirements/apt.txt)
  # brings it.
  problems+=("$python does not run; fetchfleet needs Python 3.11 (Debian 12's python3)")
elif [ -n "$py" ] && [ "${py%.*}" != 3.11 ]; then
  problems+=("$python is Python $py; fetchfleet needs Python 3.11 (Debian 12's python3): releases are built here for the hosts' Python")
fi

if [ ${#problems[@]} -gt 0 ]; then
  echo "setup: this machine cannot run fetchfleet yet (nothing was changed):" >&2
  for problem in "${problems[@]}"; do echo "  - $problem" >&2; done
  exit 2
fi
echo "setup: ${os_name}, Python ${py:-3.11 (to install)}, as $(id -un)"
if [ -n "$check_only" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: would install Debian packages: ${missing[*]}"
  else
    echo "setup: Debian packages present"
  fi
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  py=$(python_version)
  if [ "${py%.*}" != 3.11 ]; then
    echo "setup: $python is Python ${py:-missing} after installing python3-venv; fetchfleet needs 3.11" >&2
    exit 2
  fi
else
  echo "setup: Debian packages present"
fi

# A Debian package may start its service on install (postgresql, transmission-daemon); the suite
# starts its own throwaway instances, so a system-wide one is only noise. Nothing to stop here on
# a machine without systemd as PID 1.

# Debian's munin-limits for the monitoring unit tests, unpacked (its package would run munin-cron).
scripts/unpack-munin.sh

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

ensure_venv() {  # ensure_venv DIR REQUIREMENTS... : (re)install only when the locks changed
  local dir=$1; shift
  local want; want=$(stamp_of "$@")
  if [ -f "$dir/.pins" ] && [ "$(cat "$dir/.pins")" = "$want" ]; then
    echo "setup: $dir up to date"
    return
  fi
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  echo "setup: installing into $dir from $* (every file checked against the lock's hashes)"
  local args=()
  for r in "$@"; do args+=(-r "$r"); done
  "$dir/bin/pip" install -q --disable-pip-version-check --require-hashes "${args[@]}"
  echo "$want" > "$dir/.pins"
}

# The control toolchain, locked by requirements/lock.sh from requirements/control.in.
ensure_venv .venv requirements/control.txt
# The suite's own library (fetchfleet/), importable by fab tasks and tests.
# Checked from / (the checkout itself would be on sys.path as the current directory) and against
# this checkout's path (a .venv copied from another clone points elsewhere).
(cd / && "$OLDPWD/.venv/bin/python" -c 'import fetchfleet, sys; sys.exit(not fetchfleet.__file__.startswith(sys.argv[1]))' "$OLDPWD/") 2>/dev/null ||
  .venv/bin/pip install -q --no-deps -e . >/dev/null
if [ -f app/requirements.lock ]; then
  # The app's locks (refreshed by app/lock.sh).
  ensure_venv .venv-app app/requirements.lock app/requirements-test.txt
  .venv-app/bin/pip install -q --no-deps -e app >/dev/null
fi
echo "setup: done"
