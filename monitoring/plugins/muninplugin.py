"""A small base for the fleet's Munin plugins (munin-node 2.0's plugin protocol), stdlib only.

munin-node runs a plugin as `PLUGIN` (fetch: `field.value V` lines), `PLUGIN config` (the graphs
and their fields) or `PLUGIN autoconf` (`yes`, or `no (why)`), with the environment set in
/etc/munin/plugin-conf.d. A plugin here:

- collects one snapshot of its service per run, and derives both its config and its values
  from it, so the fields a run declares are the fields it reports;
- speaks multigraph (every graph is a `multigraph NAME` section; NAME is also the alert name:
  munin-limits reports it as the service, the pager builds the dedup key and the runbook link
  from it) and dirtyconfig (values right after the config: one run instead of two);
- takes `.warning`/`.critical` from its defaults, overridden from the environment (the role
  writes them from inventory data): `GRAPH_FIELD_warning` for one field, `GRAPH_warning` for
  every thresholded field of a graph; an empty value or `none` switches the threshold off;
- writes errors to stderr, never to stdout (munin-node would parse them as data). A service
  that cannot be asked is not an error of the plugin: it says why on stderr, reports every
  value as U (munin-limits turns repeated U into UNKNOWN), and exits 0. Bad settings exit 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TextIO

Value = int | float | None
Values = dict[str, dict[str, Value]]

# Munin's own range syntax (munin-limits' get_limits): "MAX", "MIN:MAX", "MIN:" or ":MAX".
_RANGE = re.compile(r"^\s*(?:[-+]?[\d.]+|[-+]?[\d.]*:[-+]?[\d.]*)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TYPES = ("GAUGE", "DERIVE", "COUNTER", "ABSOLUTE")


class Unavailable(Exception):
    """The service cannot be asked right now: every value of this run is unknown (U)."""


class PluginError(Exception):
    """The plugin is set up wrongly (a bad setting): it exits 1 and says what to fix."""


def clean_fieldname(name: str) -> str:
    """Munin's field name rules (Munin::Plugin::clean_fieldname): letters, digits and _, not
    starting with a digit, and never `root` (a 2.0 bug)."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", re.sub(r"^[^A-Za-z_]+", "_", name))
    return "__root" if cleaned == "root" else cleaned


def unique_fieldnames(names: Iterable[str], suffix: str = "") -> dict[str, str]:
    """Original name -> a clean field name (plus `suffix`), distinct even when two originals
    clean to the same thing."""
    taken: set[str] = set()
    mapping = {}
    for original in names:
        candidate = base = clean_fieldname(original) + suffix
        n = 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        mapping[original] = candidate
    return mapping


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str = "GAUGE"
    min: float | None = None
    max: float | None = None
    draw: str | None = None
    info: str | None = None
    cdef: str | None = None
    graph: bool = True
    warning: str | None = None
    critical: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PluginError(f"field name {self.name!r} is not a Munin field name")
        if self.type not in TYPES:
            raise PluginError(f"field {self.name}: type {self.type!r} is not one of {TYPES}")

    @property
    def has_thresholds(self) -> bool:
        return bool(self.warning or self.critical)


@dataclass(frozen=True)
class Graph:
    """One multigraph section. `name` is the alert's name when a field carries thresholds."""

    name: str
    title: str
    vlabel: str
    category: str
    fields: tuple[Field, ...]
    info: str | None = None
    args: str | None = "--base 1000 -l 0"
    period: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PluginError(f"graph name {self.name!r} is not a Munin service name")
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise PluginError(f"graph {self.name} declares a field twice: {names}")


class Plugin:
    """Subclasses set `name` (the executable's name) and `alerts` (graph name -> what it means
    when its thresholds trip: each has a runbook), and implement `collect`, `graphs`, `values`."""

    name: ClassVar[str]
    alerts: ClassVar[dict[str, str]] = {}
    # What the plugin asks (e.g. "Transmission RPC"). When set, the plugin also reports the graph
    # NAME_up: 1 when the service answered, 0 when it did not (critical). That is the page for
    # an outage; the pager does not page the UNKNOWNs of the plugin's other graphs meanwhile.
    service: ClassVar[str | None] = None
    up_category: ClassVar[str] = "fetchfleet"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)

    # --- what a plugin implements -------------------------------------------------------------

    def collect(self) -> Any:
        """One look at the service; raise Unavailable when it cannot be asked."""
        raise NotImplementedError

    def graphs(self, snapshot: Any | None) -> list[Graph]:
        """The graphs for this snapshot (None: the service could not be asked)."""
        raise NotImplementedError

    def values(self, snapshot: Any) -> Values:
        """graph name -> field name -> value (None for unknown)."""
        raise NotImplementedError

    def is_up(self, snapshot: Any) -> bool:
        """Whether the service counts as up once `collect` succeeded."""
        return True

    def autoconf(self) -> str | None:
        """None when the plugin fits this host; otherwise why not."""
        try:
            self.collect()
        except Unavailable as err:
            return str(err)
        return None

    # --- settings -----------------------------------------------------------------------------

    def setting(self, key: str, default: str) -> str:
        return self.env.get(key, default)

    def list_setting(self, key: str, default: Iterable[str] = ()) -> list[str]:
        """A space- or comma-separated list (env.queues "transfers media index")."""
        raw = self.env.get(key)
        return list(default) if raw is None else [x for x in re.split(r"[\s,]+", raw) if x]

    def number_setting(self, key: str, default: float) -> float:
        raw = self.env.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise PluginError(f"env.{key} must be a number, got {raw!r}") from None

    def thresholds(self, graph: Graph) -> Graph:
        """The graph with its fields' thresholds overridden from the environment."""
        return replace(
            graph,
            fields=tuple(
                replace(
                    f,
                    warning=self._limit(graph, f, "warning"),
                    critical=self._limit(graph, f, "critical"),
                )
                for f in graph.fields
            ),
        )

    def _limit(self, graph: Graph, f: Field, kind: str) -> str | None:
        key = f"{graph.name}_{f.name}_{kind}"
        if key not in self.env:
            key = f"{graph.name}_{kind}"
            # A graph-wide setting applies to the fields that carry thresholds, not to the
            # others drawn beside them.
            if key not in self.env or not f.has_thresholds:
                return getattr(f, kind)
        value = self.env[key].strip()
        if value.lower() == "none":  # munin's plugin-conf.d cannot hold an empty value
            value = ""
        if value and not _RANGE.match(value):
            raise PluginError(
                f"env.{key} = {self.env[key]!r} is not a Munin range (MAX, MIN:MAX, MIN: or :MAX)"
            )
        return value or None

    # --- state between runs (rates) ------------------------------------------------------------

    def state_path(self) -> Path:
        """munin-node gives each plugin a state file per master (MUNIN_STATEFILE)."""
        if "MUNIN_STATEFILE" in self.env:
            return Path(self.env["MUNIN_STATEFILE"])
        return Path(self.env.get("MUNIN_PLUGSTATE", "/tmp")) / f"{self.name}.state"

    def load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path().read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        path = self.state_path()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        tmp.replace(path)

    # --- the protocol ---------------------------------------------------------------------------

    def run(self, argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
        command = argv[1] if len(argv) > 1 else "fetch"
        try:
            if command == "autoconf":
                reason = self.autoconf()
                out.write("yes\n" if reason is None else f"no ({_one_line(reason)})\n")
                return 0
            if command not in ("config", "fetch"):
                err.write(f"{self.name}: unknown command {command!r} (config, autoconf or none)\n")
                return 1
            if self.env.get("MUNIN_CAP_MULTIGRAPH") != "1":
                err.write(f"{self.name}: needs multigraph (munin-node 1.4 or later)\n")
                return 1
            text = self._render(command, err)
        except PluginError as problem:
            err.write(f"{self.name}: {problem}\n")
            return 1
        out.write(text)
        return 0

    def _render(self, command: str, err: TextIO) -> str:
        try:
            snapshot = self.collect()
        except Unavailable as why:
            err.write(f"{self.name}: {why}; reporting every value as unknown\n")
            snapshot = None
        graphs = self.graphs(snapshot)
        # Values only when they are printed: computing them may consume state (log offsets).
        report = command == "fetch" or self.env.get("MUNIN_CAP_DIRTYCONFIG") == "1"
        values = self.values(snapshot) if report and snapshot is not None else {}
        if self.service:
            graphs = [self._up_graph(), *graphs]
            values[f"{self.name}_up"] = {"up": int(snapshot is not None and self.is_up(snapshot))}
        graphs = [self.thresholds(g) for g in graphs]
        lines: list[str] = []
        for graph in graphs:
            lines.append(f"multigraph {graph.name}")
            if command == "config":
                lines.extend(_config_lines(graph))
            if report:
                known = values.get(graph.name, {})
                lines.extend(f"{f.name}.value {_number(known.get(f.name))}" for f in graph.fields)
        return "".join(line + "\n" for line in lines)

    def _up_graph(self) -> Graph:
        return Graph(
            f"{self.name}_up",
            f"{self.service} answers",
            "up (1) or down (0)",
            self.up_category,
            (Field("up", f"{self.service} answers", min=0, max=1, critical="1:"),),
            info=f"1 when {self.service} answered this plugin, 0 when it did not (see stderr of the plugin run).",
            args="--base 1000 -l 0 -u 1",
        )


def windowed_percent(
    state: dict[str, Any], key: str, part: int, total: int, min_total: int
) -> float | None:
    """Share (percent) of `part` in `total` (two monotonic counters) since a baseline kept in
    `state[key]`, over a window that spans as many runs as it takes to count `min_total` events:
    a quiet interval keeps the last complete window's figure instead of a noisy one.

    None on the run that sets the baseline (fresh state, or counters that went backwards). While
    the first window fills: 0 as long as no `part` event came (a quiet service has no error share;
    an unknown would page "cannot be measured" until enough traffic came), None once one did (too
    few events to judge the share).
    """
    saved = state.get(key) or {}
    base_part, base_total = saved.get("part"), saved.get("total")
    last = saved.get("percent")
    if base_total is None or total < base_total or part < (base_part or 0):
        state[key] = {"part": part, "total": total, "percent": None}
        return None
    if total - base_total < max(min_total, 1):
        if last is None and part == base_part:
            return 0.0
        return last
    percent = 100.0 * (part - base_part) / (total - base_total)
    state[key] = {"part": part, "total": total, "percent": percent}
    return percent


def _config_lines(graph: Graph) -> list[str]:
    lines = [f"graph_title {graph.title}", f"graph_vlabel {graph.vlabel}"]
    lines.append(f"graph_category {graph.category}")
    if graph.args:
        lines.append(f"graph_args {graph.args}")
    if graph.period:
        lines.append(f"graph_period {graph.period}")
    if graph.info:
        lines.append(f"graph_info {_one_line(graph.info)}")
    lines.extend(f"{key} {value}" for key, value in graph.extra)
    lines.append("graph_order " + " ".join(f.name for f in graph.fields))
    for f in graph.fields:
        lines.append(f"{f.name}.label {_one_line(f.label)}")
        for attr in ("type", "min", "max", "draw", "cdef", "warning", "critical"):
            value = getattr(f, attr)
            if value is not None and not (attr == "type" and value == "GAUGE"):
                lines.append(
                    f"{f.name}.{attr} {_number(value) if attr in ('min', 'max') else value}"
                )
        if f.info:
            lines.append(f"{f.name}.info {_one_line(f.info)}")
        if not f.graph:
            lines.append(f"{f.name}.graph no")
    return lines


def _number(value: Any) -> str:
    if value is None:
        return "U"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(plugin_class: type[Plugin]) -> int:
    """Run as munin-node does. A crash prints its traceback on stderr and exits 1; stdout then
    holds nothing, since a run writes its output only once it is complete."""
    return plugin_class().run(sys.argv)
