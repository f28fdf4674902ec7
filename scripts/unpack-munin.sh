#!/usr/bin/env bash
# Unpack (not install) Debian 12's munin master and node for the unit tests that run the real
# munin-limits and munin's own config parsers (tests/unit/test_munin_limits.py and
# test_role_munin.py). Installing the packages would pull in cron and systemd-sysv and run
# munin-cron and munin-node on this machine. The version is the one roles/munin installs.
# Safe to run any number of times: it does nothing when the tree is already there.
set -euo pipefail
version=${MUNIN_VERSION:-2.0.73-1}
packages=(munin munin-common munin-node)
dest=/var/lib/fetchfleet/munin-$version
if [ "$(cat "$dest/.complete" 2>/dev/null)" = "${packages[*]}" ]; then
  echo "setup: munin $version unpacked in $dest"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "${packages[@]/%/=$version}")
rm -rf "$dest"
mkdir -p "$dest"
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$dest"
done
echo "${packages[*]}" > "$dest/.complete"
echo "setup: munin $version unpacked in $dest (not installed)"
