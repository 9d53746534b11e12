"""Run one system's benchmarks into bench/results/ (same as `mlsyskit reproduce SYSTEM`)."""

from __future__ import annotations

import sys

from mlsyskit.cli import app

if __name__ == "__main__":
    sys.exit(app(["reproduce", *sys.argv[1:]]))
