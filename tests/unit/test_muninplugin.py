"""The plugin base: Munin's protocol (config, fetch, autoconf, multigraph, dirtyconfig),
thresholds from the environment, stderr for errors, exit codes, and rates kept between runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import muninplugin as M
import pytest
from munin_run import run


class Toy(M.Plugin):
    name = "fetchfleet_toy"
    service = "the toy service"
    alerts: ClassVar[dict[str, str]] = {"fetchfleet_toy_depth": "the toy queue is deep"}

    def collect(self) -> dict[str, Any]:
        if self.env.get("toy_down"):
            raise M.Unavailable("toy refused the connection")
        if self.env.get("toy_crash"):
            raise RuntimeError("a bug")
        return {"depth": 7, "lag": 1.25, "spare": None}

    def graphs(self, snapshot: dict[str, Any] | None) -> list[M.Graph]:
        return [
            M.Graph(
                "fetchfleet_toy_depth",
                "Toy depth",
                "items",
                "toys",
                (
                    M.Field("depth", "depth", min=0, warning="10", critical="100"),
                    M.Field("lag", "lag", warning="5"),
                    M.Field("spare", "spare", type="DERIVE", min=0),
                ),
            )
        ]

    def values(self, snapshot: dict[str, Any]) -> M.Values:
        return {"fetchfleet_toy_depth": dict(snapshot)}


def test_fetch_prints_values_per_multigraph() -> None:
    out = run(Toy)
    assert out.code == 0 and out.stderr == ""
    assert out.stdout == (
        "multigraph fetchfleet_toy_up\nup.value 1\n"
        "multigraph fetchfleet_toy_depth\ndepth.value 7\nlag.value 1.25\nspare.value U\n"
    )


def test_config_declares_graphs_fields_and_thresholds_without_values() -> None:
    out = run(Toy, "config")
    depth = out.config["fetchfleet_toy_depth"]
    assert depth["graph_title"] == "Toy depth" and depth["graph_category"] == "toys"
    assert depth["graph_order"] == "depth lag spare"
    assert (depth["depth.warning"], depth["depth.critical"], depth["lag.warning"]) == (
        "10",
        "100",
        "5",
    )
    assert depth["spare.type"] == "DERIVE" and depth["spare.min"] == "0"
    assert out.config["fetchfleet_toy_up"]["up.critical"] == "1:"
    assert out.values == {}


def test_dirtyconfig_sends_values_with_the_config() -> None:
    out = run(Toy, "config", env={"MUNIN_CAP_DIRTYCONFIG": "1"})
    assert out.values["fetchfleet_toy_depth"]["depth"] == "7"
    assert "depth.label" in out.config["fetchfleet_toy_depth"]


def test_thresholds_come_from_the_environment() -> None:
    env = {
        "fetchfleet_toy_depth_depth_warning": "20",  # one field
        "fetchfleet_toy_depth_critical": "50:",  # every thresholded field of the graph
        "fetchfleet_toy_depth_lag_warning": "none",  # switched off (plugin-conf.d's way)
    }
    depth = run(Toy, "config", env=env).thresholded()["fetchfleet_toy_depth"]
    assert depth == {"depth": {"warning": "20", "critical": "50:"}, "lag": {"critical": "50:"}}


@pytest.mark.parametrize("bad", ["ten", "1:2:3", "10 or so"])
def test_a_bad_threshold_stops_with_the_variable_named(bad: str) -> None:
    out = run(Toy, "config", env={"fetchfleet_toy_depth_depth_critical": bad})
    assert out.code == 1 and out.stdout == ""
    assert f"env.fetchfleet_toy_depth_depth_critical = {bad!r} is not a Munin range" in out.stderr


def test_a_service_that_does_not_answer_is_down_and_unknown_not_an_error() -> None:
    out = run(Toy, env={"toy_down": "1"})
    assert out.code == 0
    assert out.values == {
        "fetchfleet_toy_up": {"up": "0"},
        "fetchfleet_toy_depth": {"depth": "U", "lag": "U", "spare": "U"},
    }
    assert "toy refused the connection" in out.stderr


def test_autoconf_says_yes_or_no_with_the_reason() -> None:
    assert run(Toy, "autoconf").stdout == "yes\n"
    out = run(Toy, "autoconf", env={"toy_down": "1"})
    assert (out.code, out.stdout) == (0, "no (toy refused the connection)\n")


def test_unknown_commands_and_nodes_without_multigraph_are_refused() -> None:
    out = run(Toy, "suggest")
    assert out.code == 1 and out.stdout == "" and "unknown command 'suggest'" in out.stderr
    stdout, stderr = io.StringIO(), io.StringIO()
    assert Toy({}).run(["fetchfleet_toy"], stdout, stderr) == 1
    assert stdout.getvalue() == "" and "multigraph" in stderr.getvalue()


def test_a_crash_leaves_stdout_empty() -> None:
    stdout = io.StringIO()
    with pytest.raises(RuntimeError):
        Toy({"MUNIN_CAP_MULTIGRAPH": "1", "toy_crash": "1"}).run(["x"], stdout, io.StringIO())
    assert stdout.getvalue() == ""


def test_field_names_follow_munins_rules() -> None:
    assert M.clean_fieldname("cloudfetch-web") == "cloudfetch_web"
    assert M.clean_fieldname("9lives") == "_lives"
    assert M.clean_fieldname("root") == "__root"
    assert M.unique_fieldnames(["a-b", "a_b", "a.b"]) == {
        "a-b": "a_b",
        "a_b": "a_b_2",
        "a.b": "a_b_3",
    }
    with pytest.raises(M.PluginError, match="not a Munin field name"):
        M.Field("a-b", "x")


def test_windowed_percent_waits_for_enough_requests() -> None:
    state: dict[str, Any] = {}
    assert M.windowed_percent(state, "k", part=0, total=100, min_total=10) is None  # baseline
    assert M.windowed_percent(state, "k", part=0, total=100, min_total=10) == 0.0  # quiet
    assert M.windowed_percent(state, "k", part=0, total=104, min_total=10) == 0.0  # no 5xx yet
    assert M.windowed_percent(state, "k", part=1, total=105, min_total=10) is None  # too few yet
    assert M.windowed_percent(state, "k", part=3, total=110, min_total=10) == 30.0
    assert M.windowed_percent(state, "k", part=3, total=111, min_total=10) == 30.0  # kept
    assert M.windowed_percent(state, "k", part=3, total=130, min_total=10) == 0.0
    assert M.windowed_percent(state, "k", part=0, total=5, min_total=10) is None  # reset


def test_state_survives_between_runs(tmp_path: Path) -> None:
    plugin = Toy({"MUNIN_STATEFILE": str(tmp_path / "toy-127.0.0.1")})
    assert plugin.load_state() == {}
    plugin.save_state({"offset": 42})
    assert Toy({"MUNIN_STATEFILE": str(tmp_path / "toy-127.0.0.1")}).load_state() == {"offset": 42}
