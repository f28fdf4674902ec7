"""Ship, install offline and migrate once: roles/app's `install` and `migrate` steps on every app
host in parallel (playbooks/release-install.yml). Nothing live changes here."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict

from fetchfleet import release as R
from fetchfleet.deploy.errors import DeployError
from fetchfleet.playbook import run_playbook

# Which of release-install.yml's tasks (roles/app install and migrate) make which deploy step.
INSTALL_STEPS = {
    "Unpack the release artifact": "ship",
    "Create the release's virtualenv": "venv",
    "Install the app and its pinned dependencies": "venv",
    "Migrate the database once": "migrate",
}


def install_steps(task_seconds: dict[str, float], total: float) -> dict[str, float]:
    """ship / venv / migrate seconds out of a profiled release-install.yml run; the rest of the
    run (facts, checks, Ansible's own start) is "install other"."""
    steps = {"ship": 0.0, "venv": 0.0, "migrate": 0.0}
    for task, seconds in task_seconds.items():
        name = task.split(" : ", 1)[-1]
        step = next((s for prefix, s in INSTALL_STEPS.items() if name.startswith(prefix)), None)
        if step:
            steps[step] += seconds
    steps["install other"] = max(0.0, total - sum(steps.values()))
    return steps


def install(env: str, rel: R.Release) -> dict[str, float]:
    """Ship, install and migrate; returns the seconds per step."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="release-") as f:
        json.dump({"app_release": asdict(rel)}, f)
        f.flush()
        recap = run_playbook(
            "release-install.yml", env=env, extra=["-e", f"@{f.name}"], echo=False, profile=True
        )
    if not recap.ok:
        failed = [n for n, c in recap.hosts.items() if c.get("failed") or c.get("unreachable")]
        tail = "\n".join(
            line for line in recap.output.splitlines() if "fatal:" in line or "msg" in line
        )[-1500:]
        raise DeployError(
            f"install failed (nothing was switched): {tail}",
            ",".join(failed) or None,
            "install",
            hint=f"look closer: ansible-playbook -i inventory/{env} playbooks/release-install.yml -e @release.json",
        )
    return install_steps(recap.task_seconds, recap.seconds)
