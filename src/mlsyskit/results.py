"""The reproduce and demo contracts every system follows.

A system's benchmark module exposes ``reproduce(quick: bool, out_dir: Path) -> BenchResult`` and
its demo module ``demo(out_dir: Path) -> DemoResult``. The runner (:mod:`mlsyskit.reproduce`)
adds the environment, checks targets, writes ``<out_dir>/<system>.json`` and prints the table; a
system never writes its own JSON, so every result file has the same shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlsyskit.errors import ConfigError

_TARGET_RE = re.compile(
    r"^\s*(?:(?P<op>>=|<=|>|<|==)\s*(?P<value>[-+0-9.eE]+)"
    r"|in\s*\[\s*(?P<lo>[-+0-9.eE]+)\s*,\s*(?P<hi>[-+0-9.eE]+)\s*\])\s*$"
)


@dataclass(frozen=True)
class Target:
    """A pass condition on a metric, written like ``>= 2.0``, ``< 1`` or ``in [0.5, 1.1]``."""

    text: str

    def __post_init__(self) -> None:
        if not _TARGET_RE.match(self.text):
            raise ConfigError(
                f"bad target {self.text!r}: expected '>= X', '<= X', '> X', '< X', '== X' "
                "or 'in [LO, HI]'"
            )

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the target (NaN never does)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        match = _TARGET_RE.match(self.text)
        assert match is not None
        if match["op"] is None:
            return float(match["lo"]) <= value <= float(match["hi"])
        bound = float(match["value"])
        return {
            ">=": value >= bound,
            "<=": value <= bound,
            ">": value > bound,
            "<": value < bound,
            "==": value == bound,
        }[match["op"]]


@dataclass
class BenchResult:
    """What one system's benchmarks measured.

    Parameters
    ----------
    metrics
        Measured figures by the issue's metric names.
    paper
        The paper's figure for a metric, a number or a short text, by the same names.
    targets
        Pass conditions by metric name (see :class:`Target`).
    simulated
        Names of metrics computed on a simulated clock rather than measured.
    notes
        Short lines a reader needs: what ran, on what, what fell short and why.
    plots
        PNG files written under the output directory, relative to it.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    paper: dict[str, float | str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    simulated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def target_status(self) -> dict[str, bool]:
        """For every metric with a target: does the measured value meet it."""
        return {
            name: (name in self.metrics and Target(text).holds(self.metrics[name]))
            for name, text in self.targets.items()
        }


@dataclass
class DemoResult:
    """What one system's small end-to-end demo did, for the report."""

    summary: str
    metrics: dict[str, float] = field(default_factory=dict)
    paper: dict[str, float | str] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    simulated: list[str] = field(default_factory=list)
