"""hardening_state [RECORD]: each control roles/hardening recorded on this host
(/etc/fetchfleet/hardening.json), checked against the live state: effective sshd settings
(`sshd -T`), kernel parameters (/proc/sys), modprobe's answer for blacklisted modules, systemd's
DefaultLimitCORE and this session's core limit, login.defs, file modes, units, audit rules,
packages and the banner. Runs as root with the system python3; prints one JSON object:
{"record": bool, "container": bool, "results": [{kind, key, status, expect, actual, reason}],
"restart_needed": [units needrestart lists]}; status is ok, drift or skipped (with its reason)."""

import grp
import hashlib
import json
import os
import pwd
import resource
import subprocess
import sys

RECORD = "/etc/fetchfleet/hardening.json"


def run(*argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 127, "", str(err)
    return proc.returncode, proc.stdout, proc.stderr


def sshd_settings(text):
    """`sshd -T` lines as key -> list of values (AllowGroups and the like repeat the key)."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            found.setdefault(key.lower(), []).append(value.strip())
    return found


def login_defs(path="/etc/login.defs"):
    found = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and not words[0].startswith("#"):
                found[words[0]] = words[1]
    return found


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        return f"unreadable: {err.strerror}"


def file_state(path):
    st = os.stat(path)
    owner = pwd.getpwuid(st.st_uid).pw_name
    group = grp.getgrgid(st.st_gid).gr_name
    return f"{owner}:{group} {st.st_mode & 0o7777:04o}"


class Live:
    """The live state, each source read once."""

    def __init__(self):
        self._cache = {}

    def once(self, name, func):
        if name not in self._cache:
            self._cache[name] = func()
        return self._cache[name]

    def actual(self, kind, key):
        if kind == "sshd":
            code, out, err = self.once("sshd", lambda: run("sshd", "-T"))
            return (
                sshd_settings(out).get(key, []) if code == 0 else f"sshd -T failed: {err.strip()}"
            )
        if kind == "sysctl":
            return read("/proc/sys/" + key.replace(".", "/"))
        if kind == "module":
            code, out, err = run("modprobe", "-n", "-v", key)
            return " ".join((out + err).split())
        if kind == "systemd":
            return run("systemctl", "show", "--property", key, "--value")[1].strip()
        if kind == "limits":
            return str(resource.getrlimit(resource.RLIMIT_CORE)[1])
        if kind == "login.defs":
            return self.once("login.defs", login_defs).get(key, "(unset)")
        if kind == "file":
            return file_state(key) if os.path.exists(key) else "(absent)"
        if kind == "unit":
            return run("systemctl", "is-active", key)[1].strip()
        if kind == "audit":
            code, out, err = run("auditctl", "-l")
            rules = [ln for ln in out.splitlines() if ln.startswith("-")]
            return str(len(rules)) if code == 0 else f"auditctl -l failed: {err.strip()}"
        if kind == "package":
            status = run("dpkg-query", "-W", "-f=${Status}", key)[1]
            return (
                "installed"
                if status.endswith("installed") and "not-installed" not in status
                else status
            )
        if kind == "banner":
            try:
                with open(key, "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest()
            except OSError as err:
                return f"unreadable: {err.strerror}"
        return f"unknown kind {kind}"


def matches(kind, expect, actual):
    if kind == "audit":
        return actual.isdigit() and int(actual) >= int(expect)
    if kind == "module":
        return expect in actual
    return actual == expect


def check(record, live):
    results = []
    for control in record.get("controls", []):
        kind, key, expect = control["kind"], control["key"], control.get("expect")
        result = {"kind": kind, "key": key, "expect": expect}
        if "skipped" in control:
            result.update(status="skipped", reason=control["skipped"])
        else:
            actual = live.actual(kind, key)
            result.update(actual=actual, status="ok" if matches(kind, expect, actual) else "drift")
        results.append(result)
    return results


def restart_needed():
    code, out, _ = run("needrestart", "-b", "-r", "l")
    if code != 0:
        return []
    return sorted(
        ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("NEEDRESTART-SVC:")
    )


def main(path):
    if not os.path.exists(path):
        return {"record": False, "container": None, "results": [], "restart_needed": []}
    with open(path) as f:
        record = json.load(f)
    return {
        "record": True,
        "container": record.get("container"),
        "results": check(record, Live()),
        "restart_needed": restart_needed(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else RECORD)))
