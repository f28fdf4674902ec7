"""site.yml's stages: which imported playbooks wait for which, from the real playbooks and the
lab inventory, and the scheduler that runs them (order, side by side, stop on failure)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fetchfleet import stages
from fetchfleet.inventory import inventory_path
from fetchfleet.playbook import PLAYBOOKS, Recap, _combined


def test_site_runs_the_tiers_on_other_hosts_side_by_side_and_every_host_in_site_order():
    plan = stages.plan(PLAYBOOKS / "site.yml", stages.ansible_hosts_of(inventory_path("lab")))
    assert plan is not None
    by_name = {s.playbook: s for s in plan}
    assert [s.playbook for s in plan] == stages.imports(PLAYBOOKS / "site.yml")
    index = {s.playbook: i for i, s in enumerate(plan)}

    def waits(name: str) -> set[str]:
        return {plan[i].playbook for i in by_name[name].after}

    # The baseline and the logs touch every host: everything after them waits.
    assert waits("logs.yml") == {"common.yml"}
    assert waits("postgresql.yml") == {"common.yml", "logs.yml"}
    # Solr and RabbitMQ share mq1: one after the other, in site order.
    assert "solr.yml" in waits("rabbitmq.yml")
    # Transmission and the web tier share worker1.
    assert "transmission.yml" in waits("web.yml")
    assert "postgresql.yml" not in waits("web.yml") | waits("rabbitmq.yml")
    # Monitoring runs on every host, last.
    assert waits("monitoring.yml") == set(index) - {"monitoring.yml"}
    # The invariant behind it all: two playbooks that share a host run in site order.
    for later in plan:
        for i, earlier in enumerate(plan[: index[later.playbook]]):
            if earlier.hosts & later.hosts:
                assert i in later.after, (earlier.playbook, later.playbook)


def test_a_playbook_with_plays_of_its_own_or_a_conditional_import_is_not_staged(tmp_path: Path):
    (tmp_path / "a.yml").write_text("- hosts: all\n  tasks: []\n")
    (tmp_path / "mixed.yml").write_text(
        "- ansible.builtin.import_playbook: a.yml\n- hosts: all\n  tasks: []\n"
    )
    (tmp_path / "when.yml").write_text("- ansible.builtin.import_playbook: a.yml\n  when: x\n")
    (tmp_path / "only.yml").write_text("- name: A\n  ansible.builtin.import_playbook: a.yml\n")
    assert stages.imports(tmp_path / "mixed.yml") is None
    assert stages.imports(tmp_path / "when.yml") is None
    assert stages.imports(tmp_path / "a.yml") is None
    assert stages.imports(tmp_path / "only.yml") == ["a.yml"]


def test_a_pattern_ansible_cannot_resolve_here_counts_as_every_host():
    hosts_of = stages.ansible_hosts_of(inventory_path("lab"))
    everyone = hosts_of("all")
    assert hosts_of("db_primary:db_replicas") == {"db1", "db2"}
    assert hosts_of("web:&workers") == frozenset()
    assert hosts_of("{{ target }}") == everyone
    assert hosts_of("localhost") == everyone


def _plan() -> list[stages.Stage]:
    # a and b share nothing; c waits for a; d waits for every one before it.
    return [
        stages.Stage("a.yml", frozenset({"h1"}), ()),
        stages.Stage("b.yml", frozenset({"h2"}), ()),
        stages.Stage("c.yml", frozenset({"h1"}), (0,)),
        stages.Stage("d.yml", frozenset({"h1", "h2"}), (0, 1, 2)),
    ]


def test_stages_that_share_no_host_run_at_the_same_time_and_the_rest_wait():
    a_running, b_running = threading.Event(), threading.Event()
    order: list[str] = []

    def run_one(stage: stages.Stage) -> str:
        order.append(f"start {stage.playbook}")
        if stage.playbook == "a.yml":
            a_running.set()
            # Only returns if b runs while a does: a serial scheduler would fail here.
            assert b_running.wait(30), "b did not start while a was running"
        if stage.playbook == "b.yml":
            b_running.set()
            assert a_running.wait(30)
        order.append(f"end {stage.playbook}")
        return "ok"

    results = stages.run(_plan(), run_one, lambda r: r == "ok")
    assert results == ["ok"] * 4
    assert order.index("start c.yml") > order.index("end a.yml")
    assert order.index("start d.yml") > max(order.index(f"end {x}.yml") for x in "abc")


def test_after_a_failed_stage_nothing_new_starts_and_the_recap_names_what_never_ran():
    def run_one(stage: stages.Stage) -> Recap:
        code = 2 if stage.playbook == "a.yml" else 0
        return Recap({next(iter(stage.hosts)): {"ok": 3, "failed": int(code > 0)}}, 1.0, code)

    plan = _plan()
    results = stages.run(plan, run_one, lambda r: r.returncode == 0)
    assert results[0] is not None and results[0].returncode == 2
    assert results[2] is None and results[3] is None  # c and d never started
    recap = _combined(plan, results, 1.0)
    assert not recap.ok
    assert "NOT RUN [c.yml]" in recap.output and "NOT RUN [d.yml]" in recap.output
    assert recap.hosts["h1"]["failed"] == 1


def test_the_combined_recap_adds_up_every_stage_per_host():
    plan = _plan()[:2]
    results = [
        Recap({"h1": {"ok": 5, "changed": 1}}, 1.0, 0, "one\n", {"Gathering Facts": 2.0}),
        Recap(
            {"h1": {"ok": 2, "changed": 0}, "h2": {"ok": 4}},
            2.0,
            0,
            "two\n",
            {"Gathering Facts": 1.5},
        ),
    ]
    recap = _combined(plan, results, 2.5)
    assert recap.ok and recap.seconds == 2.5
    assert recap.hosts == {"h1": {"ok": 7, "changed": 1}, "h2": {"ok": 4}}
    assert recap.output == "one\ntwo\n"
    assert recap.task_seconds == {"Gathering Facts": 3.5}


def test_an_exception_in_a_stage_reaches_the_caller():
    def run_one(stage: stages.Stage) -> str:
        if stage.playbook == "b.yml":
            raise RuntimeError("ansible-playbook not found")
        return "ok"

    with pytest.raises(RuntimeError, match="not found"):
        stages.run(_plan(), run_one, lambda r: r == "ok")


def test_a_limit_keeps_only_the_stages_that_touch_its_hosts_in_their_order():
    hosts_of = stages.ansible_hosts_of(inventory_path("lab"))
    plan = stages.plan(PLAYBOOKS / "site.yml", hosts_of)
    assert plan is not None
    kept = stages.within(plan, hosts_of("loadbalancers"))
    assert [s.playbook for s in kept] == ["common.yml", "logs.yml", "web.yml", "monitoring.yml"]
    assert [s.after for s in kept] == [(), (0,), (0, 1), (0, 1, 2)]
    db = stages.within(plan, hosts_of("db2"))
    assert [s.playbook for s in db] == [
        "common.yml",
        "logs.yml",
        "postgresql.yml",
        "monitoring.yml",
    ]
    assert stages.within(plan, frozenset()) == []
