"""fetchfleet.playbook against real ansible-playbook runs on this machine (connection local)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fetchfleet.playbook import (
    _PROFILE_ENV,
    ansible_environ,
    parse_changes,
    parse_recap,
    parse_task_seconds,
)

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


def run(tmp_path: Path, profile: bool, env: dict[str, str] | None = None) -> str:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    if env is None:
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
    # A lower bound only: the task slept 1 s; a loaded machine may take longer.
    assert seconds["Sleep a little - with a dash in the name"] >= 0.9
    assert seconds["Say hi"] < seconds["Sleep a little - with a dash in the name"]
    assert parse_recap(output)["localhost"]["ok"] == 3


def test_no_task_seconds_without_the_profiler(tmp_path: Path) -> None:
    assert parse_task_seconds(run(tmp_path, profile=False)) == {}


CHECK_PLAY = """\
- name: Drift
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A file that is as it should be
      ansible.builtin.copy:
        dest: "{{ dir }}/same"
        content: "same\\n"
        mode: "0644"
    - name: A file someone edited by hand
      ansible.builtin.copy:
        dest: "{{ dir }}/edited"
        content: "wanted\\n"
        mode: "0644"
      notify: Reload something
    - name: Files that are missing
      ansible.builtin.copy:
        dest: "{{ dir }}/{{ item }}"
        content: "x\\n"
        mode: "0644"
      loop: [a, b]
  handlers:
    - name: Reload something
      ansible.builtin.debug:
        msg: reload
      changed_when: true
"""


def test_check_mode_changes_name_each_host_and_task(tmp_path: Path) -> None:
    """A real `ansible-playbook --check --diff`: what would change is read from its output,
    and nothing changed."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "same").write_text("same\n")
    (files / "same").chmod(0o644)
    (files / "edited").write_text("edited by hand\n")
    playbook = tmp_path / "drift.yml"
    playbook.write_text(CHECK_PLAY)
    tool = Path(sys.executable).parent / "ansible-playbook"
    argv = [str(tool), "-i", "localhost,", "-c", "local", "--check", "--diff"]
    argv += [
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"dir={files}",
        str(playbook),
    ]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert parse_changes(proc.stdout) == {
        "localhost": [
            "A file someone edited by hand",
            "Files that are missing",
            "Reload something (handler)",
        ]
    }
    # A looped task counts once, in the recap as here.
    assert parse_recap(proc.stdout)["localhost"]["changed"] == 3
    assert (files / "edited").read_text() == "edited by hand\n"
    assert not (files / "a").exists()


def test_the_suites_environment_runs_a_real_play_with_mitogens_strategy(tmp_path: Path) -> None:
    environ = ansible_environ(profile=True)
    assert environ["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(environ["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    config = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed"],
        env=environ, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DEFAULT_STRATEGY(env: ANSIBLE_STRATEGY) = mitogen_linear" in config
    # Ansible refuses a strategy it cannot load ("Invalid play strategy specified"): this play
    # only passes when Mitogen's plugin is found and runs its tasks.
    output = run(tmp_path, profile=True, env=environ)
    assert parse_recap(output)["localhost"]["ok"] == 3
    assert list(parse_task_seconds(output)) == [
        "Sleep a little - with a dash in the name",
        "Say hi",
    ]


def test_fetchfleet_mitogen_0_leaves_ansibles_own_strategy(monkeypatch) -> None:
    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    monkeypatch.setenv("FETCHFLEET_MITOGEN", "0")
    assert "ANSIBLE_STRATEGY" not in ansible_environ()
    assert ansible_environ()["ANSIBLE_CONFIG"].endswith("ansible.cfg")
