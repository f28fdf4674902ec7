"""jenkins/Jenkinsfile read the way Jenkins reads it, as far as that is possible without Jenkins.

`call_tree` compiles the file with Groovy 2.4 (Debian's `groovy`, the version Jenkins' Pipeline
engine runs) to its syntax tree and returns the tree of calls (jenkins/tools/calltree.groovy);
a syntax error fails with the parser's message and line. `outline` turns that tree into the
declarative pipeline's structure: its options, parameters, and each stage in order with its
`sh` commands, options, `when`, `input`, milestones and `post` commands.

What this cannot see: whether Jenkins' declarative validator accepts the file (unknown
directives or step names, a plugin missing on the controller, credential ids, parameter types),
nor anything that happens at run time. On a real controller that check is
`POST /pipeline-model-converter/validate` (see jenkins/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchfleet.inventory import REPO

JENKINSFILE = REPO / "jenkins" / "Jenkinsfile"
CALLTREE = REPO / "jenkins" / "tools" / "calltree.groovy"


class JenkinsfileError(Exception):
    pass


@dataclass
class StageOutline:
    name: str
    path: tuple[str, ...]  # enclosing stages, outermost first
    commands: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # every step called, in order
    options: list[dict[str, Any]] = field(default_factory=list)
    when: list[dict[str, Any]] = field(default_factory=list)
    input: dict[str, Any] | None = None
    post: dict[str, list[str]] = field(default_factory=dict)
    milestones: list[int] = field(default_factory=list)


@dataclass
class Outline:
    options: list[dict[str, Any]]
    parameters: list[dict[str, Any]]
    environment: list[str]
    stages: list[StageOutline]  # leaf and parent stages, in the order they appear
    post: dict[str, list[str]]


def _java_home() -> str | None:
    """Debian's groovy launcher wants JAVA_HOME (default-java may be absent beside a JDK)."""
    java = shutil.which("java")
    return str(Path(os.path.realpath(java)).parent.parent) if java else None


def call_tree(path: Path = JENKINSFILE) -> list[dict[str, Any]]:
    groovy = shutil.which("groovy")
    if groovy is None:
        raise JenkinsfileError(
            "groovy is not installed (Debian package groovy, requirements/apt-jenkins.txt): run make setup"
        )
    env = dict(os.environ)
    if not Path(env.get("JAVA_HOME", "/nonexistent"), "bin", "java").exists():
        env["JAVA_HOME"] = _java_home() or ""
    proc = subprocess.run(
        [groovy, str(CALLTREE), str(path)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise JenkinsfileError(f"{path} does not compile:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def _calls(nodes: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [n for n in nodes if n.get("call") == name]


def _one(nodes: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    found = _calls(nodes, name)
    if len(found) > 1:
        raise JenkinsfileError(f"{name} appears {len(found)} times where one is allowed")
    return found[0] if found else None


def _post(stage_body: list[dict[str, Any]]) -> dict[str, list[str]]:
    post = _one(stage_body, "post")
    if post is None:
        return {}
    return {
        cond["call"]: [c["args"][0] for c in _calls(cond["body"], "sh")] for cond in post["body"]
    }


def _option_calls(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = _one(body, "options")
    return [{"call": c["call"], "args": c["args"]} for c in (node["body"] if node else [])]


def _stages(body: list[dict[str, Any]], path: tuple[str, ...], out: list[StageOutline]) -> None:
    for stage in _calls(body, "stage"):
        name = stage["args"][0]
        item = StageOutline(
            name, path, options=_option_calls(stage["body"]), post=_post(stage["body"])
        )
        when = _one(stage["body"], "when")
        item.when = [
            {"call": c.get("call"), "args": c.get("args", [])} for c in (when or {}).get("body", [])
        ]
        gate = _one(stage["body"], "input")
        if gate is not None:
            item.input = {c["call"]: c["args"][0] for c in gate["body"] if c.get("args")}
        out.append(item)
        steps = _one(stage["body"], "steps")
        for step in steps["body"] if steps else []:
            item.steps.append(step.get("call") or step.get("expression", "?"))
            if step.get("call") == "sh":
                item.commands.append(step["args"][0])
            if step.get("call") == "milestone":
                item.milestones.append(int(step["args"][0]["ordinal"]))
        nested = _one(stage["body"], "stages")
        if nested is not None:
            _stages(nested["body"], (*path, name), out)


def outline(path: Path = JENKINSFILE) -> Outline:
    tree = call_tree(path)
    pipeline = _one(tree, "pipeline")
    if pipeline is None:
        raise JenkinsfileError(f"{path}: no `pipeline {{ … }}` block (not a declarative pipeline)")
    body = pipeline["body"]
    stages = _one(body, "stages")
    if stages is None:
        raise JenkinsfileError(f"{path}: the pipeline has no stages")
    params = _one(body, "parameters")
    environment = _one(body, "environment")
    found: list[StageOutline] = []
    _stages(stages["body"], (), found)
    return Outline(
        options=_option_calls(body),
        parameters=[
            {"type": p["call"], **p["args"][0]} for p in (params["body"] if params else [])
        ],
        environment=[e.get("expression", "") for e in (environment["body"] if environment else [])],
        stages=found,
        post=_post(body),
    )
