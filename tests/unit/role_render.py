"""Render a role's templates (and run chosen tasks of it) with Ansible on this machine, with the
role's defaults and vars as a converge sees them: the tests then check the files with the real
tools (sshd, modprobe, auditctl, visudo, journalctl) instead of reading their text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def render(
    role: str,
    templates: dict[str, str],
    out: Path,
    settings: dict[str, Any],
    roles_with_defaults: tuple[str, ...] = ("fleet",),
    tasks: list[dict[str, Any]] | None = None,
) -> Path:
    """templates: output name -> template path under roles/ROLE/templates; `settings` are what
    the inventory or the play would set (extra vars, which win over the vars files)."""
    out.mkdir(parents=True, exist_ok=True)
    base = REPO / "roles" / role
    files = [str(REPO / "roles" / r / "defaults" / "main.yml") for r in roles_with_defaults]
    files += [str(base / "defaults" / "main.yml")]
    if (base / "vars" / "main.yml").exists():
        files.append(str(base / "vars" / "main.yml"))
    play = [
        {
            "name": f"Render roles/{role}'s templates",
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "vars_files": files,
            "vars": {"role_path": str(base), "ansible_python_interpreter": sys.executable},
            "tasks": [
                {
                    "name": f"Render {name}",
                    "ansible.builtin.template": {
                        "src": str(base / "templates" / src),
                        "dest": str(out / name),
                        "mode": "0644",
                    },
                }
                for name, src in templates.items()
            ]
            + (tasks or []),
        }
    ]
    run_play(play, settings, out)
    return out


def run_play(
    play: list[dict[str, Any]], settings: dict[str, Any], out: Path, inventory: str = "localhost,"
) -> None:
    """Run `play` with this environment's ansible-playbook against `inventory`, `settings` as
    extra vars; play.yml and settings.json are written to `out`."""
    (out / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (out / "settings.json").write_text(json.dumps(settings))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            inventory,
            "-e",
            f"@{out}/settings.json",
            str(out / "play.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
