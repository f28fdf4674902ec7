"""fetchfleet.playbook against real ansible-playbook runs on this machine (connection local)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fetchfleet.playbook import _PROFILE_ENV, parse_recap, parse_task_seconds

PLAY = """\
- name: Two timed tasks
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Sleep a little - with a dash in the name
      ansible.builtin.command: sleep 0.6
      changed_when: false
    - name: Say hi
      ansible.builtin.debug:
        msg: hi
    - name: Sleep a little - with a dash in the name
      ansible.builtin.command: sleep 0.3
      changed_when: false
"""


def run(tmp_path: Path, profile: bool) -> str:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", **(_PROFILE_ENV if profile else {})}
    tool = Path(sys.executable).parent / "ansible-playbook"
    interpreter = f"ansible_python_interpreter={sys.executable}"
    proc = subprocess.run(
        [str(tool), "-i", "localhost,", "-c", "local", "-e", interpreter, str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_task_seconds_come_from_a_real_profiled_run(tmp_path: Path) -> None:
    output = run(tmp_path, profile=True)
    seconds = parse_task_seconds(output)
    assert list(seconds) == ["Sleep a little - with a dash in the name", "Say hi"]
    assert 0.9 <= seconds["Sleep a little - with a dash in the name"] < 5
    assert seconds["Say hi"] < seconds["Sleep a little - with a dash in the name"]
    assert parse_recap(output)["localhost"]["ok"] == 3


def test_no_task_seconds_without_the_profiler(tmp_path: Path) -> None:
    assert parse_task_seconds(run(tmp_path, profile=False)) == {}
