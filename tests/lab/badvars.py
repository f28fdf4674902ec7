"""The one check behind every role's "bad variables stop the run before any change" lab test.

A playbook run with one bad variable must fail on the hosts it ran on, report no change on any
of them, and name the variable in what failed: the failed results' `msg` and `argument_errors`, and the
message of ansible's "[ERROR]: Task failed: …" line (which shows an assert's fail_msg even under
no_log), not anywhere in the output: a task's title, the task source ansible quotes, and the
`argument_spec_data` of a failed validation all name variables that did not fail.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import yaml

from fetchfleet.playbook import Recap, run_playbook

# "fatal: [lb1]: FAILED! =>" or "failed: [web1] (item=x) =>", the result below it in YAML
# (ansible.cfg: callback_result_format = yaml), indented.
_FAILED = re.compile(r"^(?:fatal|failed): \[[^\]]+\].*=>(?P<inline>.*)$")
# "[ERROR]: Task failed: Action failed: MESSAGE", MESSAGE on this line and those up to "Origin:".
_ERROR = "[ERROR]: Task failed: "


def failure_messages(output: str) -> list[str]:
    """What each failed result of a playbook's output says: its msg and argument errors."""
    messages: list[str] = []
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if line.startswith(_ERROR):
            text = [line.removeprefix(_ERROR)]
            for following in lines[number + 1 :]:
                if following.startswith("Origin:") or not following.strip():
                    break
                text.append(following)
            messages.append("\n".join(text))
        if not (match := _FAILED.match(line)):
            continue
        block = [match["inline"]]
        for following in lines[number + 1 :]:
            if not following.startswith("    "):
                break
            block.append(following)
        result = yaml.safe_load(textwrap.dedent("\n".join(block[1:])) or block[0]) or {}
        assert isinstance(result, dict), f"not a task result: {line}\n{block}"
        messages.append(str(result.get("msg", "")))
        messages += [str(error) for error in result.get("argument_errors", [])]
    return messages


def assert_refused_before_any_change(
    playbook: str,
    extra: dict[str, Any] | list[str],
    variable: str,
    limit: str | None = None,
) -> Recap:
    """Run PLAYBOOK with EXTRA (variables, or ansible-playbook arguments such as ["-e", "@f"]);
    assert the run failed before any change, naming VARIABLE. Returns the recap for more checks."""
    args = ["-e", json.dumps(extra)] if isinstance(extra, dict) else extra
    recap = run_playbook(playbook, limit=limit, extra=args, echo=False)
    tail = recap.output[-3000:]
    assert recap.returncode != 0, f"{playbook} accepted {args}:\n{tail}"
    assert recap.hosts, f"{playbook} did not get as far as a play recap:\n{tail}"
    assert recap.total("failed") >= 1, f"{playbook} failed, but on no host: {recap.hosts}\n{tail}"
    assert recap.total("changed") == 0, f"changed before failing: {recap.changed_tasks}"
    messages = failure_messages(recap.output)
    assert any(variable in m for m in messages), (
        f"the failure does not name {variable}: {messages or tail}"
    )
    return recap
