"""Writes the demo report: ``index.html`` and ``summary.md``, one section per system."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlsyskit.environment import describe_environment
from mlsyskit.hardware import Catalogue
from mlsyskit.results import DemoResult
from mlsyskit.systems import SystemInfo


@dataclass(frozen=True)
class SystemSection:
    """One system's part of the report: what ran (or why nothing did)."""

    info: SystemInfo
    status: str  # "ok", "failed" or "not implemented"
    result: DemoResult | None = None
    error: str | None = None
    wall_s: float = 0.0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _figures_rows(result: DemoResult) -> list[tuple[str, str, str, str]]:
    names = list(result.metrics) + [n for n in result.paper if n not in result.metrics]
    return [
        (
            name,
            _fmt(result.metrics.get(name, "")),
            _fmt(result.paper.get(name, "")),
            "simulated" if name in result.simulated else "measured",
        )
        for name in names
    ]


def _hardware_rows(catalogue: Catalogue) -> list[tuple[str, str, str, str]]:
    rows = []
    for device in catalogue:
        numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in device.numbers().items())
        rows.append((device.kind, device.name, device.display_name, numbers))
    return rows


def _markdown(sections: list[SystemSection], catalogue: Catalogue, out_dir: Path) -> str:
    env = describe_environment()
    lines = [
        "# mlsyskit demo report",
        "",
        f"Ran on {env['platform']}, {env['num_cpus']} CPUs, accelerator: {env['accelerator']}, "
        f"commit {env['git_commit']}, {env['utc_time']}.",
        "",
        "| system | status | time (s) |",
        "|---|---|---|",
    ]
    lines += [f"| {s.info.title} | {s.status} | {s.wall_s:.1f} |" for s in sections]
    for s in sections:
        lines += ["", f"## {s.info.title} ({s.info.area})", "", s.info.summary, ""]
        lines.append(f"Paper: {s.info.paper_headline}.")
        lines.append("")
        if s.status == "not implemented":
            lines.append("**Not implemented yet.** No figures are shown for it.")
            continue
        if s.status == "failed":
            lines.append(f"**Demo failed:** `{s.error}`")
            continue
        assert s.result is not None
        lines.append(s.result.summary)
        rows = _figures_rows(s.result)
        if rows:
            lines += ["", "| figure | this run | paper | clock |", "|---|---|---|---|"]
            lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
        for plot in s.result.plots:
            lines += ["", f"![{s.info.title}]({Path(plot).relative_to(out_dir)})"]
    lines += ["", "## Hardware catalogue", "", "| kind | name | device | numbers |"]
    lines.append("|---|---|---|---|")
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _hardware_rows(catalogue)]
    return "\n".join(lines) + "\n"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
font-size:.92em;text-align:left}th{background:#f3f3f3}.ok{color:#176b1f}.failed{color:#b00020}
.ni{color:#777}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}section{margin-top:2em}
"""


def _html(sections: list[SystemSection], catalogue: Catalogue, out_dir: Path) -> str:
    env = describe_environment()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mlsyskit demo report</title>",
        f"<style>{_CSS}</style></head><body><h1>mlsyskit demo report</h1>",
        f"<p>Ran on {html.escape(str(env['platform']))}, {env['num_cpus']} CPUs, accelerator: "
        f"{html.escape(str(env['accelerator']))}, commit {env['git_commit']}, "
        f"{env['utc_time']}.</p>",
        _table(
            ("system", "status", "time (s)"),
            [(s.info.title, s.status, f"{s.wall_s:.1f}") for s in sections],
        ),
    ]
    for s in sections:
        css = {"ok": "ok", "failed": "failed"}.get(s.status, "ni")
        parts.append(
            f"<section><h2>{html.escape(s.info.title)} <small class='{css}'>"
            f"({html.escape(s.status)})</small></h2><p>{html.escape(s.info.summary)}</p>"
            f"<p><b>Paper:</b> {html.escape(s.info.paper_headline)}.</p>"
        )
        if s.status == "not implemented":
            parts.append("<p class='ni'>Not implemented yet. No figures are shown for it.</p>")
        elif s.status == "failed":
            parts.append(f"<p class='failed'>Demo failed: <code>{html.escape(str(s.error))}</code>")
        else:
            assert s.result is not None
            parts.append(f"<p>{html.escape(s.result.summary)}</p>")
            rows = _figures_rows(s.result)
            if rows:
                parts.append(_table(("figure", "this run", "paper", "clock"), list(rows)))
            for plot in s.result.plots:
                rel = html.escape(str(Path(plot).relative_to(out_dir)))
                parts.append(f"<img src='{rel}' alt='{html.escape(s.info.title)} plot'>")
        parts.append("</section>")
    parts.append("<section><h2>Hardware catalogue</h2>")
    parts.append(_table(("kind", "name", "device", "numbers"), _hardware_rows(catalogue)))
    parts.append("</section></body></html>\n")
    return "\n".join(parts)


def write_report(out_dir: Path, sections: list[SystemSection], catalogue: Catalogue) -> Path:
    """Write ``index.html`` and ``summary.md`` into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(_markdown(sections, catalogue, out_dir), encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(_html(sections, catalogue, out_dir), encoding="utf-8")
    return index
