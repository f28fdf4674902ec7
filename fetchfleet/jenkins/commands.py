"""Every `fab`/`make` command a Jenkins job, the Jenkinsfile or `fab pipeline` runs must exist.

A command exists when `fab --list` has its task and the task takes each `--option` it is given,
or when the Makefile has its target. Commands that other work has yet to add are listed by whoever
calls `missing` (tests/unit/test_jenkins_commands.py keeps that list, PENDING): a job may wait for
its command, but only by name.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fetchfleet.inventory import REPO

_FAB = re.compile(r"(?:^|/)fab$")
_TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    tool: str  # fab | make
    name: str  # task (deploy, backup.run) or target (lint)
    options: tuple[str, ...]  # --flags given to a fab task
    line: str  # the shell line it came from

    def pending_keys(self) -> list[str]:
        """How the command and each of its options are named in a PENDING list."""
        return [self.name] + [f"{self.name} {o}" for o in self.options]


def parse(script: str) -> list[Command]:
    """The fab/make commands of a shell script (one per line, `\\` continues one; `#` lines and
    other commands ignored)."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if not words:
            continue
        if _FAB.search(words[0]):
            rest = words[1:]
            name = next((w for w in rest if not w.startswith("-")), "")
            options = tuple(w.split("=", 1)[0] for w in rest if w.startswith("--"))
            found.append(Command("fab", name, options, line))
        elif words[0] == "make":
            for target in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                found.append(Command("make", target, (), line))
    return found


@cache
def fab_tasks() -> dict[str, frozenset[str]]:
    """`fab --list`: every task name (and alias) with the flags it takes, from the fabfile of
    this checkout loaded the way fab loads it."""
    from invoke import Collection
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(REPO)).load("fabfile")
    ns = Collection.from_module(module)
    tasks: dict[str, frozenset[str]] = {}
    for context in ns.to_contexts():
        for name in (context.name, *context.aliases):
            tasks[name] = frozenset(context.flags)
    # A collection's default task also answers to the collection's own name (`fab deploy`).
    for name, task in ns.task_names.items():
        for alias in task:
            tasks.setdefault(alias, tasks[name])
    return tasks


def make_targets(makefile: Path = REPO / "Makefile") -> frozenset[str]:
    return frozenset(_TARGET.findall(makefile.read_text()))


def problem(command: Command) -> str | None:
    """Why `command` cannot run as written, or None."""
    if command.tool == "make":
        if command.name not in make_targets():
            return f"make {command.name}: no such target in the Makefile"
        return None
    tasks = fab_tasks()
    if command.name not in tasks:
        return f"fab {command.name}: no such task in `fab --list`"
    unknown = [o for o in command.options if o not in tasks[command.name]]
    if unknown:
        return f"fab {command.name}: no option {', '.join(unknown)} (see fab --help {command.name})"
    return None


def missing(commands: list[Command], pending: frozenset[str] = frozenset()) -> list[str]:
    """Problems of the commands that are not PENDING (by task name or `task --option`)."""
    problems = []
    for command in commands:
        why = problem(command)
        if why and not any(key in pending for key in command.pending_keys()):
            problems.append(f"{why}\n    in: {command.line}")
    return problems


def pending_done(commands: list[Command], pending: frozenset[str]) -> list[str]:
    """PENDING entries that exist now: the list must shrink as the commands land."""
    done = []
    for entry in sorted(pending):
        name, _, option = entry.partition(" ")
        users = [c for c in commands if c.name == name and (not option or option in c.options)]
        probe = Command("fab", name, (option,) if option else (), entry)
        if users and problem(probe) is None:
            done.append(entry)
    return done
