"""roles/hardening rendered twice, as on a lab host (a container, root keeps a key login, kernel
parameters outside /proc/sys/net skipped) and as on a real host (the role's defaults)."""

from __future__ import annotations

from pathlib import Path

from role_render import render

TEMPLATES = {
    "sshd.conf": "etc/ssh/sshd_config.d/10-fetchfleet.conf.j2",
    "sysctl.conf": "etc/sysctl.d/60-fetchfleet-hardening.conf.j2",
    "modprobe.conf": "etc/modprobe.d/fetchfleet-hardening.conf.j2",
    "audit.rules": "etc/audit/rules.d/50-fetchfleet.rules.j2",
    "hardening.json": "etc/fetchfleet/hardening.json.j2",
    "limits.conf": "etc/security/limits.d/10-fetchfleet-core.conf.j2",
    "debsums.service": "etc/systemd/system/fetchfleet-debsums.service.j2",
    "debsums.timer": "etc/systemd/system/fetchfleet-debsums.timer.j2",
}
# What a container cannot set: everything outside /proc/sys/net (as the role finds by stat).
KERNEL_OWNED = [
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "kernel.randomize_va_space",
    "fs.suid_dumpable",
    "fs.protected_hardlinks",
    "fs.protected_symlinks",
    "fs.protected_fifos",
    "fs.protected_regular",
]
LAB = {
    "ansible_virtualization_role": "guest",
    "ansible_virtualization_type": "systemd-nspawn",
    "hardening_container_skips": True,
    "hardening_sshd_permit_root_login": "prohibit-password",
    "__hardening_sysctl_skipped": KERNEL_OWNED,
    "__hardening_files_present": [{"path": "/etc/shadow", "mode": "0640", "group": "shadow"}],
}
REAL = {
    "ansible_virtualization_role": "host",
    "ansible_virtualization_type": "kvm",
    "__hardening_sysctl_skipped": [],
    "__hardening_files_present": [],
}


def render_hardening(out: Path) -> dict[str, Path]:
    return {
        "lab": render("hardening", TEMPLATES, out / "lab", LAB),
        "real": render("hardening", TEMPLATES, out / "real", REAL),
    }
