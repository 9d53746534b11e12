"""The README's results table, generated from ``bench/results/*.json`` (``make results``)."""

from __future__ import annotations

import json
from pathlib import Path

from mlsyskit.errors import DataError
from mlsyskit.systems import SYSTEMS

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_results_table(results_dir: Path) -> str:
    """A Markdown table of every result file's headline metrics (those with a target or a paper
    figure); supporting metrics stay in the JSON files, which the table's footer names."""
    rows = [
        "| system | metric | measured | paper | target | met | clock |",
        "|---|---|---|---|---|---|---|",
    ]
    found = False
    for info in SYSTEMS:
        path = results_dir / f"{info.name}.json"
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            metrics = doc["metrics"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(f"{path}: not a reproduce result file: {exc}") from exc
        found = True
        suffix = " (quick)" if doc.get("quick") else ""
        for name, value in metrics.items():
            if name not in doc.get("targets", {}) and name not in doc.get("paper", {}):
                continue  # supporting figures stay in the JSON file
            met = doc.get("target_met", {}).get(name)
            rows.append(
                "| {sys} | {name} | {val} | {paper} | {target} | {met} | {clock} |".format(
                    sys=info.title + suffix,
                    name=name,
                    val=_fmt(value),
                    paper=_fmt(doc.get("paper", {}).get(name, "")),
                    target=doc.get("targets", {}).get(name, ""),
                    met={True: "yes", False: "**no**", None: ""}[met],
                    clock="simulated" if name in doc.get("simulated", []) else "measured",
                )
            )
    if not found:
        return "_No results yet: run `make bench`._"
    rows.append("")
    rows.append(f"Supporting figures and notes: `{results_dir}/<system>.json`.")
    return "\n".join(rows)


def update_readme(readme: Path, results_dir: Path) -> None:
    """Replace the text between the results markers in ``readme`` with a fresh table."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise DataError(f"{readme}: missing the markers {START} and {END}")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    table = render_results_table(results_dir)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
