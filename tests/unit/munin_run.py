"""Run a plugin as munin-node would (argv, environment) and read its output back by the
protocol's own rules, so tests assert on graphs and fields rather than on text layout."""

from __future__ import annotations

import io
import stat
from dataclasses import dataclass, field
from pathlib import Path

from muninplugin import Plugin

MUNIN_ENV = {"MUNIN_CAP_MULTIGRAPH": "1"}


@dataclass
class Output:
    code: int
    stdout: str
    stderr: str
    config: dict[str, dict[str, str]] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def thresholded(self) -> dict[str, dict[str, dict[str, str]]]:
        """graph -> field -> {warning/critical: range} for fields that carry thresholds."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for graph, attrs in self.config.items():
            for key, value in attrs.items():
                name, _, attr = key.rpartition(".")
                if attr in ("warning", "critical"):
                    out.setdefault(graph, {}).setdefault(name, {})[attr] = value
        return out


def parse(text: str, out: Output) -> None:
    graph = None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "multigraph":
            graph = value
            out.config.setdefault(graph, {})
            continue
        assert graph is not None, f"output before any multigraph line: {line!r}"
        if key.endswith(".value"):
            out.values.setdefault(graph, {})[key.removesuffix(".value")] = value
        else:
            out.config[graph][key] = value


def run(plugin: type[Plugin], *args: str, env: dict[str, str] | None = None) -> Output:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = plugin({**MUNIN_ENV, **(env or {})}).run([plugin.name, *args], stdout, stderr)
    out = Output(code, stdout.getvalue(), stderr.getvalue())
    if args[:1] != ("autoconf",):
        parse(out.stdout, out)
    return out


def replay(tmp_path: Path, name: str, stdout: Path | str, code: int = 0, stderr: str = "") -> str:
    """A command that prints recorded output and exits as the real program did."""
    script = tmp_path / name
    recorded = stdout.read_text() if isinstance(stdout, Path) else stdout
    (tmp_path / f"{name}.out").write_text(recorded)
    (tmp_path / f"{name}.err").write_text(stderr)
    script.write_text(
        f"#!/bin/sh\ncat '{tmp_path}/{name}.out'\ncat '{tmp_path}/{name}.err' >&2\nexit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)
