"""roles/hardening's files checked by the programs that read them: the kernel parameters against
this machine's kernel (the lab's hosts share it), modprobe's answer for the blacklist, every audit
rule through auditctl's own parser, the sudoers file through visudo, login.defs as the role edits
Debian's own file, the units through systemd-analyze, and the host record the report reads."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hardening_render import KERNEL_OWNED, render_hardening
from role_render import render

DEFAULTS = yaml.safe_load((REPO / "roles/hardening/defaults/main.yml").read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_hardening(tmp_path_factory.mktemp("hardening"))


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        pytest.fail(
            f"{name} is needed here (requirements/apt-hardening.txt; make setup installs it)"
        )
    return found


def sysctl_file(path: Path) -> dict[str, str]:
    """sysctl.d(5): `key = value` lines, # and ; comments."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_every_kernel_parameter_exists_in_the_labs_kernel() -> None:
    for key in DEFAULTS["hardening_sysctl"]:
        assert (Path("/proc/sys") / key.replace(".", "/")).exists(), f"{key}: not in this kernel"


def test_a_container_sets_the_network_parameters_and_records_the_rest(
    rendered: dict[str, Path],
) -> None:
    lab = sysctl_file(rendered["lab"] / "sysctl.conf")
    real = sysctl_file(rendered["real"] / "sysctl.conf")
    assert real == {k: str(v) for k, v in DEFAULTS["hardening_sysctl"].items()}
    assert set(lab) == set(real) - set(KERNEL_OWNED) and all(k.startswith("net.") for k in lab)
    text = (rendered["lab"] / "sysctl.conf").read_text()
    for key in KERNEL_OWNED:
        assert f"# {key} = " in text and "read-only" in text
    record = json.loads((rendered["lab"] / "hardening.json").read_text())
    skipped = {c["key"] for c in record["controls"] if c["kind"] == "sysctl" and "skipped" in c}
    assert skipped == set(KERNEL_OWNED)
    real_record = json.loads((rendered["real"] / "hardening.json").read_text())
    assert all("skipped" not in c for c in real_record["controls"] if c["kind"] != "policy")


def test_modprobe_refuses_every_blacklisted_module(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "fetchfleet-hardening.conf").write_text(
        (rendered["lab"] / "modprobe.conf").read_text()
    )
    for module in DEFAULTS["hardening_blacklisted_modules"]:
        # -C: this directory instead of /etc/modprobe.d; -n: only say what would be done.
        out = subprocess.run(
            [tool("modprobe"), "-n", "-v", "-C", str(tmp_path), module],
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() == "install /bin/false", (module, out.stdout, out.stderr)


def auditctl_problems(rule: str) -> list[str]:
    """What auditctl's parser says of a rule. Run in a PID namespace of its own, where the kernel
    refuses every audit change (as in the lab's containers): a rule that parses gets only
    'Error sending ... (Operation not permitted)'; anything else is the parser's complaint."""
    out = subprocess.run(
        ["unshare", "--pid", "--fork", tool("auditctl"), *rule.split()],
        capture_output=True,
        text=True,
    )
    lines = (out.stdout + out.stderr).splitlines()
    return [
        ln
        for ln in lines
        if ln.strip() and not (ln.startswith("Error sending") and "Operation not permitted" in ln)
    ]


def test_auditctl_parses_every_rule(rendered: dict[str, Path]) -> None:
    rules = [
        ln
        for ln in (rendered["real"] / "audit.rules").read_text().splitlines()
        if ln.startswith("-")
    ]
    assert rules == DEFAULTS["hardening_audit_rules"]
    for rule in rules:
        assert auditctl_problems(rule) == [], rule
    # The check can fail: a permission auditctl does not know, a syscall that does not exist.
    assert auditctl_problems("-w /etc/passwd -p wz -k identity")
    assert auditctl_problems("-a always,exit -F arch=b64 -S no_such_call -k x")


def test_the_audit_rules_cover_what_the_benchmark_asks() -> None:
    text = "\n".join(DEFAULTS["hardening_audit_rules"])
    for watched in (
        "/etc/passwd",
        "/etc/shadow",
        "/etc/sudoers",
        "/etc/ssh/sshd_config",
        "/etc/localtime",
    ):
        assert f"-w {watched} " in text
    for call in ("settimeofday", "clock_settime", "init_module", "finit_module", "delete_module"):
        assert call in text


def test_visudo_accepts_commons_sudoers_file(tmp_path: Path) -> None:
    out = render(
        "common", {"sudoers": "etc/sudoers.d/fetchfleet-admins.j2"}, tmp_path,
        {"common_admin_users": [{"name": "ops", "ssh_keys": ["ssh-ed25519 AAAA x"]}, {"name": "old", "ssh_keys": [], "state": "absent"}]},
    )  # fmt: skip
    check = subprocess.run(
        [tool("visudo"), "-c", "-f", str(out / "sudoers")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ops ALL=(ALL:ALL) NOPASSWD: ALL" in (out / "sudoers").read_text()
    assert "old" not in (out / "sudoers").read_text()


def login_defs(path: Path) -> dict[str, str]:
    """As shadow's getdef reads it: `NAME VALUE` lines, the last one of a name wins."""
    found = {}
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#"):
            found[words[0]] = words[1]
    return found


def test_the_role_edits_debians_login_defs_as_intended(tmp_path: Path) -> None:
    """The role's two tasks (the probe, then lineinfile over what it says differs) on a copy of
    Debian's login.defs, then the probe again: it must find every setting as set, or a
    converge would rewrite login.defs every time."""
    original = Path("/etc/login.defs")
    if not original.exists():
        pytest.fail("Debian's /etc/login.defs is needed (package login)")
    copy = tmp_path / "login.defs"
    shutil.copy(original, copy)
    probe, edit_task = yaml.safe_load((REPO / "roles/hardening/tasks/logins.yml").read_text())[:2]
    me = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}:644"
    argv = probe["ansible.builtin.command"]["argv"]
    assert "'/etc/login.defs', 'root:root:644'" in argv
    probe["ansible.builtin.command"]["argv"] = argv.replace(
        "'/etc/login.defs', 'root:root:644'", f"'{copy}', '{me}'"
    )
    edit = {
        **edit_task["ansible.builtin.lineinfile"],
        "path": str(copy),
        "owner": None,
        "group": None,
        "mode": "0644",
    }
    again = {
        **probe,
        "name": "Probe again",
        "register": "__again",
    }
    keep = {
        "name": "Keep what the second probe said",
        "ansible.builtin.copy": {
            "content": "{{ __hardening_login_defs_now.stdout }}\n--\n{{ __again.stdout }}\n",
            "dest": str(tmp_path / "probes.txt"),
            "mode": "0644",
        },
    }
    out = render(
        "hardening",
        {},
        tmp_path / "play",
        {},
        tasks=[probe, {**edit_task, "ansible.builtin.lineinfile": edit}, again, keep],
    )
    assert out.exists()
    values = login_defs(copy)
    assert values["UMASK"] == "027"
    assert values["ENCRYPT_METHOD"] == "YESCRYPT"
    assert values["YESCRYPT_COST_FACTOR"] == "8"
    assert values["SHA_CRYPT_MIN_ROUNDS"] == values["SHA_CRYPT_MAX_ROUNDS"] == "100000"
    assert values["PASS_MAX_DAYS"] == "365"
    # Debian's comments stay, and each name is set once.
    assert copy.read_text().count("\nUMASK\t") == 1 and "pam_umask" in copy.read_text()
    first, second = (tmp_path / "probes.txt").read_text().split("\n--\n")
    assert "differs UMASK" in first.split("\n"), first  # Debian's is 022
    assert second.split() and all(
        line.startswith("as-set ") for line in second.split("\n") if line
    ), second


def test_systemd_accepts_the_units(rendered: dict[str, Path], tmp_path: Path) -> None:
    for name in ("fetchfleet-debsums.service", "fetchfleet-debsums.timer"):
        shutil.copy(rendered["real"] / name.replace("fetchfleet-", ""), tmp_path / name)
    check = subprocess.run(
        [tool("systemd-analyze"), "verify", str(tmp_path / "fetchfleet-debsums.timer"), str(tmp_path / "fetchfleet-debsums.service")],
        capture_output=True, text=True, env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_record_lists_every_control_and_each_reason(rendered: dict[str, Path]) -> None:
    record = json.loads((rendered["lab"] / "hardening.json").read_text())
    assert record["container"] is True
    kinds = {c["kind"] for c in record["controls"]}
    assert kinds >= {
        "sshd",
        "sysctl",
        "module",
        "systemd",
        "limits",
        "login.defs",
        "file",
        "unit",
        "audit",
        "package",
        "banner",
        "policy",
    }
    skipped = {(c["kind"], c["key"]): c["skipped"] for c in record["controls"] if "skipped" in c}
    assert "audit netlink" in skipped[("unit", "auditd.service")]
    assert "CAP_SYS_PACCT" in skipped[("unit", "acct.service")]
    assert all(reason.strip() for reason in skipped.values())
    real = json.loads((rendered["real"] / "hardening.json").read_text())
    assert real["container"] is False
    assert ("unit", "auditd.service") not in {
        (c["kind"], c["key"]) for c in real["controls"] if "skipped" in c
    }


def test_the_state_program_checks_live_values(rendered: dict[str, Path], tmp_path: Path) -> None:
    """programs/hardening_state.py on this machine: a file and a kernel parameter that match, and
    one of each that does not, are told apart; a skipped control keeps its reason."""
    sys.path.insert(0, str(REPO / "fetchfleet" / "programs"))
    from hardening_state import Live, check

    sample = tmp_path / "sample"
    sample.write_text("x")
    sample.chmod(0o640)
    live_hardlinks = Path("/proc/sys/fs/protected_hardlinks").read_text().strip()
    record = {"controls": [
        {"kind": "file", "key": str(sample), "expect": "root:root 0640"},
        {"kind": "file", "key": str(sample), "expect": "root:root 0600"},
        {"kind": "sysctl", "key": "fs.protected_hardlinks", "expect": live_hardlinks},
        {"kind": "sysctl", "key": "fs.protected_hardlinks", "expect": "7"},
        {"kind": "policy", "key": "partitions", "skipped": "provisioning's job"},
    ]}  # fmt: skip
    statuses = [r["status"] for r in check(record, Live())]
    assert statuses == ["ok", "drift", "ok", "drift", "skipped"]
