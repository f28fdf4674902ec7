"""Silences during planned work: the remote program that writes them (run for real), the file
read back by the pager's own reader, and deploy, rollback and restart holding them — the real
actions against test_rollout's recorded fleet plus a recorded monitoring host, which answers
`cat` of the pager's configuration as a converged one does and runs the silences program for
real on a directory of its own."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from test_rollout import R1, R2, RecordedFleet, RecordedHost, audit_dir, release

from fetchfleet import deploy as D
from fetchfleet.inventory import Host, load_fleet
from fetchfleet.monitoring import silence as M
from fetchfleet.monitoring.pagercode import cli as pager_cli
from fetchfleet.monitoring.pagercode import silence as pager_silence
from fetchfleet.remote import Local, Result, run_program

__all__ = ["audit_dir"]  # the fixture, from test_rollout


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def deploy(fleet: RecordedFleet, out, **kwargs) -> D.Report:  # type: ignore[no-untyped-def]
    """test_rollout's deploy of R2 (built and installed by stand-ins), printing to `out`."""

    def install(env, rel):  # type: ignore[no-untyped-def]
        for rec in fleet.hosts.values():
            if "web" in rec.host.groups or "workers" in rec.host.groups:
                rec.install(rel.id)
        return {}

    return D.Deploy(
        fleet.env, build=lambda *a: release(R2), install_release=install, hosts=fleet.d_hosts(),
        out=out, **kwargs,
    ).run()  # fmt: skip


# --- the program and the pager's reader agree ---------------------------------------------------


def program(path: Path, *args: str) -> dict:
    return run_program(Local(), "silences", str(path), *args)


def spec(**kw) -> str:
    base = {"id": "s-1", "hosts": ["web*"], "alerts": ["fetchfleet_supervisor_*"], "minutes": 30}
    return json.dumps({**base, "reason": "fab deploy", "who": "alice@ctl", **kw})


def test_the_program_writes_what_the_pager_reads(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    added = program(path, "add", spec())["silence"]
    assert (path.stat().st_mode & 0o777) == 0o644, "the pager (user munin) must read it"
    [read] = pager_silence.load(path)
    assert read == added
    until = datetime.datetime.fromisoformat(added["until"])
    start = datetime.datetime.fromisoformat(added["start"])
    assert until - start == datetime.timedelta(minutes=30)
    assert pager_silence.matching([read], "web2", "fetchfleet_supervisor_programs", now()) == read
    assert (
        pager_silence.matching([read], "worker1", "fetchfleet_supervisor_programs", now()) is None
    )
    assert pager_silence.matching([read], "web2", "fetchfleet_celery_consumers", now()) is None
    assert pager_silence.matching([read], "web2", "fetchfleet_supervisor_up", until) is None


def test_lift_ends_it_after_the_grace_and_never_later_than_it_would_have(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    program(path, "add", spec(id="s-long"))
    program(path, "add", spec(id="s-short", minutes=1))
    lifted = program(path, "lift", "s-long", "120")["silence"]
    assert lifted["lifted"] is not None
    left = datetime.datetime.fromisoformat(lifted["until"]) - datetime.datetime.fromisoformat(
        lifted["lifted"]
    )
    assert left == datetime.timedelta(seconds=120)
    short = program(path, "lift", "s-short", "3600")["silence"]
    assert short["until"] == json.loads(path.read_text())["silences"][1]["until"]
    assert datetime.datetime.fromisoformat(short["until"]) <= now() + datetime.timedelta(minutes=1)
    program(path, "lift", "s-short", "0")
    assert [s["id"] for s in pager_silence.active(pager_silence.load(path), now())] == ["s-long"]
    assert program(path, "lift", "s-none", "0")["silence"] is None
    assert len(program(path, "list")["silences"]) == 2


def test_silences_that_ended_a_day_ago_are_dropped_at_the_next_change(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    program(path, "add", spec(id="s-old"))
    data = json.loads(path.read_text())
    data["silences"][0]["until"] = (now() - datetime.timedelta(days=2)).isoformat()
    path.write_text(json.dumps(data))
    program(path, "add", spec(id="s-new"))
    assert [s["id"] for s in json.loads(path.read_text())["silences"]] == ["s-new"]


def test_an_unreadable_file_silences_nothing_and_says_so(tmp_path: Path) -> None:
    import io

    path = tmp_path / "silences.json"
    path.write_text("{not json")
    log = io.StringIO()
    assert pager_silence.load(path, log) == []
    assert "silences unreadable, none applied" in log.getvalue()


def test_no_pager_directory_is_an_error_not_a_new_directory(tmp_path: Path) -> None:
    answer = program(tmp_path / "missing" / "silences.json", "add", spec())
    assert "is the pager installed" in answer["error"]
    assert not (tmp_path / "missing").exists()


# --- a recorded fleet with a monitoring host ------------------------------------------------------


class RecordedMonitor(RecordedHost):
    """A converged monitoring host: its pager's configuration, its spool on a directory here."""

    def answer(self, command: str, stdin) -> Result | None:
        if command == f"cat {pager_cli.DEFAULT_CONFIG}":
            config = {"events_url": "https://events.example", "spool_dir": str(self.spool)}
            return Result(self.host.name, command, 0, json.dumps(config), "", 0.0)
        return super().answer(command, stdin)

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def silences(self) -> list[dict]:
        path = self.spool / "silences.json"
        return json.loads(path.read_text())["silences"] if path.exists() else []


class MonitoredFleet(RecordedFleet):
    """test_rollout's fleet plus ops1 (monitoring) and mq1 (rabbitmq); `journal` is every
    command any host got, in order."""

    def __init__(self, tmp: Path, webs: int = 2, **kwargs) -> None:
        super().__init__(tmp, webs, **kwargs)
        inv = tmp / "inv"
        with open(inv / "hosts.yml", "a") as f:
            f.write(
                "    monitoring:\n      hosts:\n        ops1: {ansible_host: 10.9.0.81}\n"
                "    rabbitmq:\n      hosts:\n        mq1: {ansible_host: 10.9.0.51}\n"
            )
        self.fleet = load_fleet(str(inv))
        for name, cls in (("ops1", RecordedMonitor), ("mq1", RecordedHost)):
            root = tmp / "hosts" / name
            (root / "spool").mkdir(parents=True)
            self.hosts[name] = cls(self.fleet.host(name), root, set())
        self.journal: list[tuple[str, str]] = []
        for rec in self.hosts.values():
            rec.run = self._journaled(rec, rec.run)  # type: ignore[method-assign]

    def _journaled(self, rec: RecordedHost, run):  # type: ignore[no-untyped-def]
        def run_and_note(command: str, stdin=None, check: bool = True, timeout: float = 600):  # type: ignore[no-untyped-def]
            self.journal.append((rec.name, command))
            return run(command, stdin, check, timeout)

        return run_and_note

    @property
    def monitor(self) -> RecordedMonitor:
        return self.hosts["ops1"]  # type: ignore[return-value]

    def index(self, predicate) -> list[int]:  # type: ignore[no-untyped-def]
        return [i for i, (host, cmd) in enumerate(self.journal) if predicate(host, cmd)]


def silences_program(host: str, command: str) -> bool:
    return host == "ops1" and command.startswith("python3 - ") and "/silences.json " in command


def test_a_deploy_silences_what_it_will_cause_before_it_restarts_and_lifts_it_after(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    said: list[str] = []
    report = deploy(fleet, out=said.append)
    assert report.result == "ok"
    [held] = fleet.monitor.silences()
    assert held["hosts"] == ["web1", "web2", "worker1", "mq1"]
    assert held["alerts"] == list(M.ROLLOUT_ALERTS)
    assert held["reason"].startswith("fab deploy of ") and held["reason"].endswith(" on inv")
    assert held["who"], "who deployed is named"
    lifted = datetime.datetime.fromisoformat(held["lifted"])
    assert datetime.datetime.fromisoformat(held["until"]) - lifted == datetime.timedelta(
        seconds=M.LIFT_GRACE_SECONDS
    )
    writes = fleet.index(silences_program)
    restarts = fleet.index(lambda h, c: "supervisorctl stop" in c)
    assert len(writes) == 2 and len(restarts) == 3
    assert writes[0] < restarts[0] and restarts[-1] < writes[1], "silenced around every restart"
    assert " add " in fleet.journal[writes[0]][1] and " lift " in fleet.journal[writes[1]][1]
    text = "\n".join(said)
    assert "silenced fetchfleet_supervisor_*" in text and "web1, web2, worker1, mq1" in text
    assert "resolves still go out" in text and f"silence {held['id']} lifted" in text


def test_a_failed_deploy_lifts_its_silence_too(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2, broken={"web2": {R2}})
    with pytest.raises(D.DeployError):
        deploy(fleet, out=lambda _: None)
    [held] = fleet.monitor.silences()
    assert held["lifted"] is not None


def test_a_restart_of_one_web_host_silences_that_host_only(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=3)
    D.Restart(fleet.env, only={"web2"}, hosts=fleet.d_hosts(), out=lambda _: None).run()
    [held] = fleet.monitor.silences()
    assert held["hosts"] == ["web2"], "no worker restarts: the broker's consumers are not silenced"
    assert held["reason"] == f"fab restart of {R1} on inv"


def test_rollback_holds_a_silence_as_well(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    deploy(fleet, out=lambda _: None)
    D.Rollback(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None).run()
    reasons = [s["reason"] for s in fleet.monitor.silences()]
    assert len(reasons) == 2 and reasons[1].startswith("fab rollback of ")


def test_an_unreachable_monitoring_host_never_stops_the_deploy_and_is_named(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    fleet.monitor.unreachable = True
    said: list[str] = []
    assert deploy(fleet, out=said.append).result == "ok"
    [line] = [s for s in said if "NOT silenced" in s]
    assert "ops1" in line and "they may page" in line


def test_without_a_monitoring_host_silencing_says_so_once_and_does_nothing(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    said: list[str] = []
    assert deploy(fleet, out=said.append).result == "ok"
    notes = [s for s in said if "silence" in s]
    assert len(notes) == 1 and "no monitoring host in inventory inv" in notes[0]


# --- silence() and lift() themselves ---------------------------------------------------------------


def test_bad_arguments_are_refused_before_any_host_is_asked(tmp_path: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    f, connect = fleet.fleet, fleet.connect
    cases = [
        (["web9"], ["df"], 10, "x", "no host 'web9'"),
        (["db*"], ["df"], 10, "x", "matches no host"),
        (["web1"], ["fetchfleet_supervisr_*"], 10, "x", "matches no alert"),
        (["web1"], [], 10, "x", "at least one alert"),
        (["web1"], ["df"], 0, "x", "minutes must be above 0"),
        (["web1"], ["df"], 10, "  ", "needs a reason"),
        (["web1;rm"], ["df"], 10, "x", "neither a host name nor a shell pattern"),
    ]
    for hosts, alerts, minutes, reason, error in cases:
        with pytest.raises(M.MonitoringError, match=error):
            M.silence(f, hosts, alerts, minutes, reason, connect)
    assert fleet.journal == []


def test_a_manual_silence_is_listed_and_lifted(tmp_path: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    held = M.silence(fleet.fleet, ["worker1"], ["df", "df_inode"], 20, "disk work", fleet.connect)
    assert held.on == (fleet.fleet.host("ops1"),) and held.missing == ()
    [row] = M.active(fleet.fleet, fleet.connect)
    assert (row["id"], row["hosts"], row["alerts"], row["on"]) == (
        held.id, "worker1", "df df_inode", "ops1",
    )  # fmt: skip
    assert M.lift(held, fleet.connect, grace=0) == []
    assert M.active(fleet.fleet, fleet.connect) == []


def test_a_monitoring_host_without_the_pager_is_named_with_the_converge_to_run(
    tmp_path: Path,
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)

    class Bare(RecordedHost):
        pass

    fleet.hosts["ops1"] = Bare(fleet.fleet.host("ops1"), tmp_path / "hosts/ops1", set())
    fleet.hosts["ops1"].answer = lambda command, stdin: (  # type: ignore[method-assign]
        Result("ops1", command, 1, "", "cat: /etc/fetchfleet/pager.json: No such file", 0.0)
        if command.startswith("cat ")
        else None
    )
    with pytest.raises(M.MonitoringError, match=r"playbooks/monitoring\.yml"):
        M.silence(fleet.fleet, ["web1"], ["df"], 5, "x", fleet.connect)


def test_unreachable_is_a_remote_error_the_context_manager_reports(tmp_path: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    fleet.monitor.unreachable = True
    said: list[str] = []
    with M.silenced(fleet.fleet, ["web1"], ["df"], 5, "x", fleet.connect, said.append) as held:
        assert held is None
    assert len(said) == 1 and "unreachable" in said[0]


def test_every_monitoring_host_gets_the_silence(tmp_path: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    inv = tmp_path / "inv"
    text = (
        (inv / "hosts.yml")
        .read_text()
        .replace(
            "        ops1: {ansible_host: 10.9.0.81}\n",
            "        ops1: {ansible_host: 10.9.0.81}\n        ops2: {ansible_host: 10.9.0.82}\n",
        )
    )
    (inv / "hosts.yml").write_text(text)
    fleet.fleet = load_fleet(str(inv))
    (tmp_path / "hosts/ops2/spool").mkdir(parents=True)
    fleet.hosts["ops2"] = RecordedMonitor(fleet.fleet.host("ops2"), tmp_path / "hosts/ops2", set())
    fleet.hosts["ops2"].unreachable = True
    held = M.silence(fleet.fleet, ["web1"], ["df"], 5, "x", fleet.connect)
    assert [h.name for h in held.on] == ["ops1"] and held.missing[0].startswith("ops2: ")
    fleet.hosts["ops2"].unreachable = False
    held = M.silence(fleet.fleet, [Host("web1", "", (), {})], ["df"], 5, "y", fleet.connect)
    assert [h.name for h in held.on] == ["ops1", "ops2"]
    assert all(len(fleet.hosts[n].silences()) >= 1 for n in ("ops1", "ops2"))


def test_unsilence_finds_the_silence_by_id_and_lifts_it(tmp_path: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    held = M.silence(fleet.fleet, ["web1"], ["df"], 20, "disk work", fleet.connect)
    lifted, problems = M.lift_by_id(fleet.fleet, held.id, fleet.connect, grace=0)
    assert problems == [] and lifted.reason == "disk work" and lifted.hosts == ("web1",)
    assert M.active(fleet.fleet, fleet.connect) == []
    with pytest.raises(M.MonitoringError, match="no active silence 's-nope'"):
        M.lift_by_id(fleet.fleet, "s-nope", fleet.connect)
