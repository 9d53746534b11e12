"""Plot helpers: a headless matplotlib backend and one consistent look."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width_in: float = 6.0, height_in: float = 4.0) -> Figure:
    """A figure on the non-interactive Agg backend (no display here, nor in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=110)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG, creating the folder, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
