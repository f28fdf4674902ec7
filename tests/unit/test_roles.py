"""The roles' interfaces, read from the files: defaults written once, argument specs for every
entry point, one firewall-rule definition, dependencies that say what a role needs, and modules
and options that ansible does not call deprecated. (tests/unit/test_role_checks.py runs them.)"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta").is_dir())
# Role variables two plays share live in roles/fleet (a dependency with no tasks).
SHARED = "fleet"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


@cache
def specs(role: str) -> dict[str, dict]:
    return load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


@cache
def defaults(role: str) -> dict[str, Any]:
    return load(REPO / "roles" / role / "defaults" / "main.yml") or {}


@cache
def meta(role: str) -> dict[str, Any]:
    return load(REPO / "roles" / role / "meta" / "main.yml")


def dependencies(role: str) -> list[str]:
    return [d["role"] if isinstance(d, dict) else d for d in meta(role)["dependencies"]]


def uses(role: str) -> set[str]:
    """The `# uses: [ROLE/ENTRY_POINT, ...]` line of the role's meta/main.yml."""
    text = (REPO / "roles" / role / "meta" / "main.yml").read_text()
    found = re.findall(r"^# uses: \[(.*)\]$", text, re.M)
    assert len(found) == 1, f"roles/{role}/meta/main.yml needs one '# uses: [...]' line"
    return {u.strip() for u in found[0].split(",") if u.strip()}


def options(tree: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict]]:
    """Every option of a spec, sub-options included, as (dotted name, its spec)."""
    for name, spec in (tree or {}).items():
        yield f"{path}{name}", spec
        yield from options(spec.get("options") or {}, f"{path}{name}.")


def tasks_in(node: Any) -> Iterator[dict]:
    """Every task (and play) in a tasks file or playbook, inside blocks too."""
    if isinstance(node, list):
        for item in node:
            yield from tasks_in(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from tasks_in(node.get(key))


def module_of(task: dict) -> tuple[str, Any] | None:
    found = [(k, v) for k, v in task.items() if "." in k]
    return found[0] if found else None


def task_files() -> Iterator[tuple[str | None, Path]]:
    """(role or None for playbooks, file) of every tasks, handlers and playbook file."""
    for role in ROLES:
        for sub in ("tasks", "handlers"):
            for f in sorted((REPO / "roles" / role / sub).glob("*.yml")):
                yield role, f
    for f in sorted((REPO / "playbooks").glob("*.yml")):
        yield None, f


def included_roles() -> Iterator[tuple[str | None, Path, str, str]]:
    """(calling role, file, role, entry point) of every include_role/import_role."""
    for caller, f in task_files():
        for task in tasks_in(load(f)):
            found = module_of(task)
            if found and found[0] in (
                "ansible.builtin.include_role",
                "ansible.builtin.import_role",
            ):
                yield caller, f, found[1]["name"], found[1].get("tasks_from", "main")


# --- defaults in one place -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_describe_and_never_repeat_a_default(role: str) -> None:
    for entry_point, spec in specs(role).items():
        for name, option in options(spec.get("options")):
            where = f"roles/{role}/meta/argument_specs.yml {entry_point}: {name}"
            assert "default" not in option, f"{where} has a default: defaults/main.yml holds it"
            assert option.get("description"), f"{where} has no description"
            # The spec is passed to validate_argument_spec as task arguments, which are templated.
            assert "{{" not in json.dumps(option), f"{where}: a template in a spec is evaluated"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_an_option_and_every_optional_option_has_one(role: str) -> None:
    described = {name for spec in specs(role).values() for name in spec.get("options") or {}}
    own = defaults(role)
    assert not set(own) - described, f"roles/{role}: defaults no entry point describes"
    known = set(own).union(*(defaults(d) for d in dependencies(role)))
    for entry_point, spec in specs(role).items():
        for name, option in (spec.get("options") or {}).items():
            where = f"roles/{role} {entry_point}: {name}"
            if option.get("required"):
                assert name not in known, f"{where} is required, yet has a default"
            elif not option.get("no_log"):  # a secret never gets a default; the role checks it
                assert name in known, f"{where} is optional and has no default in defaults/main.yml"


# --- entry points --------------------------------------------------------------------------------


def test_every_entry_point_used_has_a_spec_and_every_spec_a_tasks_file() -> None:
    used = {(role, ep) for _, _, role, ep in included_roles()} | {(r, "main") for r in ROLES}
    for role, ep in sorted(used):
        assert ep in specs(role), f"roles/{role} has no argument spec for entry point {ep}"
    for role in ROLES:
        for ep in specs(role):
            tasks = REPO / "roles" / role / "tasks" / f"{ep}.yml"
            assert (ep == "main" and role == SHARED) or tasks.exists(), f"no {tasks} for spec {ep}"


def test_only_common_defines_the_firewall_rule() -> None:
    rule = {"port", "proto", "from_groups", "from_hosts", "from_networks"}
    for role in ROLES:
        for entry_point, spec in specs(role).items():
            for name, option in options(spec.get("options")):
                keys = set(option.get("options") or {})
                if role != "common":
                    assert not keys & rule, f"roles/{role} {entry_point}: {name} copies the rule"


def rule_variables(role: str) -> set[str]:
    return {n for s in specs(role).values() for n in s.get("options") or {} if "_firewall_" in n}


@pytest.mark.parametrize("role", [r for r in ROLES if r != "common" and rule_variables(r)])
def test_rule_variables_are_checked_against_commons_spec_first(role: str) -> None:
    """Each *_firewall_* list of a role is passed to common's firewall_check in its checks."""
    rules = rule_variables(role)
    checked: set[str] = set()
    for task in tasks_in(load(REPO / "roles" / role / "tasks" / "assert.yml")):
        found = module_of(task)
        if found and found[0] == "ansible.builtin.include_role":
            assert found[1] == {"name": "common", "tasks_from": "firewall_check"}
            checked |= set(task["vars"]["common_firewall_check"])
    assert checked == rules, f"roles/{role}/tasks/assert.yml checks {checked}, not {rules}"


# --- dependencies --------------------------------------------------------------------------------


def reads_shared(role: str) -> bool:
    files = [p for p in (REPO / "roles" / role).rglob("*") if p.suffix in (".yml", ".j2")]
    return any(re.search(r"\bfleet_\w+", p.read_text()) for p in files if p.parent.name != "meta")


@pytest.mark.parametrize("role", ROLES)
def test_meta_says_what_the_role_uses_and_depends_on(role: str) -> None:
    """`uses` lists the entry points the role includes. It depends on fleet when it reads a
    fleet_ value, or when a role that does calls it: the caller's values (rules, programs) are
    evaluated in the callee's scope, which an include_role'd caller's dependencies do not reach."""
    called = {f"{r}/{ep}" for caller, _, r, ep in included_roles() if caller == role}
    assert uses(role) == called, f"roles/{role}/meta/main.yml '# uses:' must list {called}"
    callers = {caller for caller, _, r, _ in included_roles() if r == role and caller}
    needs = role != SHARED and (reads_shared(role) or any(reads_shared(c) for c in callers))
    assert dependencies(role) == ([SHARED] if needs else []), f"roles/{role}/meta/main.yml"


def test_playbooks_that_read_shared_values_run_a_role_that_brings_them() -> None:
    for f in sorted((REPO / "playbooks").glob("*.yml")):
        for play in load(f):
            if "fleet_" in json.dumps(play.get("vars") or {}):
                roles = [r["role"] for r in play.get("roles", [])]
                assert any(SHARED in dependencies(r) for r in roles), f"{f.name}: {roles}"


# --- no deprecations -----------------------------------------------------------------------------


class _Spec(Exception):
    def __init__(self, spec: dict) -> None:
        self.spec = spec


def module_argument_spec(path: str) -> dict | None:
    """The argument spec a module's main() gives AnsibleModule (None for action-only modules):
    the only place that says which aliases are deprecated."""
    loaded = importlib.util.spec_from_file_location(f"_fetchfleet_doc_{Path(path).stem}", path)
    assert loaded and loaded.loader
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    if not hasattr(module, "main") or not hasattr(module, "AnsibleModule"):
        return None

    def capture(*args: Any, **kwargs: Any) -> None:
        raise _Spec(kwargs.get("argument_spec", args[0] if args else {}))

    module.AnsibleModule = capture
    try:
        module.main()
    except _Spec as found:
        return found.spec
    return None


def test_no_deprecated_module_option_or_alias() -> None:
    """No module ansible-doc calls deprecated; no option its argument spec marks for removal; no
    deprecated alias (community.postgresql's `db` for `login_db` warned on every converge)."""
    calls: dict[str, list[tuple[Path, Any]]] = {}
    for _, f in task_files():
        for task in tasks_in(load(f)):
            if found := module_of(task):
                calls.setdefault(found[0], []).append((f, found[1]))
    doc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", "module", *calls],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    docs = json.loads(doc.stdout)
    assert set(docs) == set(calls), f"ansible-doc knows no {set(calls) - set(docs)}"
    for module, calls_ in calls.items():
        info = docs[module]["doc"]
        assert not info.get("deprecated"), f"{module} is deprecated: {info['deprecated']}"
        # Options from the docs too: AnsibleModule adds the file options (owner, mode...) itself.
        spec = {**(info.get("options") or {}), **(module_argument_spec(info["filename"]) or {})}
        names = {alias for name, o in spec.items() for alias in [name, *(o.get("aliases") or [])]}
        retired = {d["name"] for o in spec.values() for d in o.get("deprecated_aliases") or []}
        retired |= {
            n for n, o in spec.items() if o.get("removed_in_version") or o.get("removed_at_date")
        }
        for f, args in calls_:
            if not isinstance(args, dict) or module == "ansible.builtin.set_fact":
                continue
            where = f"{f.relative_to(REPO)}: {module}"
            assert set(args) <= names, f"{where} has no option {set(args) - names}"
            assert not set(args) & retired, f"{where}: {set(args) & retired} is deprecated"
