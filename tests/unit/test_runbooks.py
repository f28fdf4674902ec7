"""Every alert has a runbook, every `fab` command a runbook names exists, and every page links
to its alert's runbook, where roles/munin serves the runbooks.

Alerts are the graphs whose fields carry thresholds: the fleet's plugins (each lists its alerts;
the test checks the list against the graphs the plugin really declares) and munin's own plugins
that roles/munin enables with thresholds (df and df_inode have defaults of their own)."""

from __future__ import annotations

import datetime
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import fetchfleet_app
import fetchfleet_celery
import fetchfleet_nginx
import fetchfleet_pgbouncer
import fetchfleet_postgres
import fetchfleet_supervisor
import fetchfleet_transmission
import muninplugin
import pytest
import yaml
from conftest import REPO
from pager import events, message

RUNBOOKS = REPO / "monitoring" / "runbooks"
ROLE = REPO / "roles" / "munin"
# munin's own plugins print thresholds even without settings (print_thresholds with defaults).
BUILTIN_WITH_DEFAULT_THRESHOLDS = {"df", "df_inode"}
# Runbooks that are not a Munin alert: the pager's test page.
NOT_ALERTS = {"README", "test_page"}

# Each plugin with settings that make it declare every graph it can have.
PLUGINS = [
    (fetchfleet_app.App, {}, None),
    (fetchfleet_celery.Celery, {}, None),
    (fetchfleet_nginx.Nginx, {}, None),
    (
        fetchfleet_pgbouncer.Pgbouncer,
        {},
        {"cloudfetch/cloudfetch": fetchfleet_pgbouncer.Pool(1, 0, 1, 0, 0.0)},
    ),
    (fetchfleet_postgres.Postgres, {"role": "primary", "replicas": "db2"}, None),
    (fetchfleet_postgres.Postgres, {"role": "replica"}, None),
    (fetchfleet_supervisor.Supervisor, {"programs": "cloudfetch-web"}, None),
    (fetchfleet_transmission.Transmission, {}, None),
]


def declared_alerts(plugin: type[muninplugin.Plugin], env: dict, snapshot) -> set[str]:  # type: ignore[no-untyped-def]
    instance = plugin(env)
    graphs = instance.graphs(snapshot) + ([instance._up_graph()] if plugin.service else [])
    return {g.name for g in graphs if any(f.has_thresholds for f in g.fields)}


def role_defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def alerts() -> set[str]:
    names = set()
    for plugin, env, snapshot in PLUGINS:
        names |= declared_alerts(plugin, env, snapshot)
    env = role_defaults()["munin_node_plugin_env"]
    thresholded = {
        p
        for p, settings in env.items()
        if any(k.endswith(("warning", "critical")) for k in settings)
    }
    enabled = set(role_defaults()["munin_node_builtin_plugins"])
    return names | (BUILTIN_WITH_DEFAULT_THRESHOLDS & enabled) | (thresholded & enabled)


@functools.cache
def fab_tasks() -> frozenset[str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fab"), "--list", "--list-format=json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    tree = json.loads(done.stdout)
    names = {t["name"] for t in tree["tasks"]}
    for collection in tree["collections"]:
        names |= {f"{collection['name']}.{t['name']}" for t in collection["tasks"]}
        if collection["default"]:
            names.add(collection["name"])
    return frozenset(names)


def test_each_plugin_lists_exactly_the_alerts_it_declares() -> None:
    for plugin in {p for p, _, _ in PLUGINS}:
        declared = set().union(*(declared_alerts(p, e, s) for p, e, s in PLUGINS if p is plugin))
        assert declared == set(plugin.alerts), plugin.name
        assert all(name.startswith(plugin.name + "_") for name in declared), (
            f"{plugin.name}: graphs must be named {plugin.name}_*, the pager groups an outage's UNKNOWNs by it"
        )


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    books = {p.stem for p in RUNBOOKS.glob("*.md")}
    assert alerts() - books == set(), "alerts without a runbook"
    assert books - alerts() - NOT_ALERTS == set(), "runbooks of no alert"


FAB = re.compile(r"`fab\s+([a-z][^`\s]*)[^`]*`")


@pytest.mark.parametrize("book", sorted(RUNBOOKS.glob("*.md")), ids=lambda p: p.stem)
def test_runbook_fab_commands_exist(book: Path) -> None:
    named = FAB.findall(book.read_text())
    unknown = sorted(set(named) - fab_tasks())
    assert unknown == [], (
        f"{book.name} names fab commands that `fab --list` does not know: {unknown}"
    )
    if book.stem not in NOT_ALERTS:
        assert named, f"{book.name} names no fab command"
        text = book.read_text()
        for section in ("## Check", "## Do"):
            assert section in text, f"{book.name} has no '{section}' section"


STEP = re.compile(r"^\d+\. ", re.M)


def steps(text: str, section: str) -> list[str]:
    """The numbered steps of a section (each with its continuation lines)."""
    if section not in text:
        return []
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    return [" ".join(s.split()) for s in STEP.split(body)[1:]]


@pytest.mark.parametrize(
    "book", sorted(p for p in RUNBOOKS.glob("*.md") if p.stem != "README"), ids=lambda p: p.stem
)
def test_every_step_to_do_names_a_fab_command_or_another_runbook(book: Path) -> None:
    """What is not automated yet goes under its own heading, with the manual way meanwhile."""
    others = {p.stem for p in RUNBOOKS.glob("*.md")} - {book.stem, "README"}
    todo = steps(book.read_text(), "## Do")
    assert todo or book.stem == "test_page", f"{book.name}: no numbered step under '## Do'"
    bare = [s for s in todo if not FAB.search(s) and not any(o in s for o in others)]
    assert bare == [], f"{book.name}: steps that name no fab command and no runbook: {bare}"


def test_the_fab_command_parser_sees_what_a_runbook_writes() -> None:
    assert FAB.findall("1. `fab restart` then `fab converge --limit web1`; not fab status") == [
        "restart",
        "converge",
    ]


def test_each_alert_pages_with_a_link_to_its_runbook_where_the_role_serves_them() -> None:
    defaults = role_defaults()
    base = "https://ops1.example/runbooks"
    for alert in sorted(alerts()):
        msg = message.Message(
            group="lab",
            host="h1",
            plugin=alert,
            title="t",
            fields=[message.FieldState("critical", "f", 1.0, ":", ":0", "f")],
        )
        [event] = events.events_for(
            msg,
            {},
            events.Links(base, "https://ops1.example/munin"),
            datetime.datetime.now(datetime.UTC),
        )
        href = event["links"][0]["href"]
        assert href == f"{base}/{alert}.md" and (RUNBOOKS / href.rsplit("/", 1)[1]).is_file()
    # The pager's runbook URL is the path the monitoring host's nginx serves the runbooks under.
    assert defaults["munin_pager_runbook_url"].endswith("{{ munin_web_runbooks_path }}")
    site = (ROLE / "templates" / "etc" / "nginx" / "sites-available" / "munin.conf.j2").read_text()
    assert (
        "location {{ munin_web_runbooks_path }}/" in site
        and "alias {{ __munin_runbooks_dir }}/" in site
    )
