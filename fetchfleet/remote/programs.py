"""Python programs run on hosts: real files in `fetchfleet/programs/`, sent on stdin to the host's
python3 (nothing is installed), each printing one JSON object as its last line. Tests run the same
files locally."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from fetchfleet.errors import RemoteError
from fetchfleet.remote.runner import Runner

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


def program_source(name: str) -> str:
    path = PROGRAMS / f"{name}.py"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROGRAMS.glob("*.py") if p.stem != "__init__"))
        raise RemoteError(f"no remote program {name!r} in {PROGRAMS} (known: {known})")
    return path.read_text()


def run_program(runner: Runner, name: str, *args: str, timeout: float = 600) -> Any:
    """Run programs/NAME.py on the runner's host with args; return its JSON answer."""
    command = " ".join(["python3", "-", *(shlex.quote(a) for a in args)])
    result = runner.run(command, stdin=program_source(name), timeout=timeout)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as err:
        raise RemoteError(
            f"program {name} printed no JSON: {result.stdout[-300:]!r} {result.stderr[-300:]!r}",
            runner.name,
            command=command,
        ) from err
