"""A description of the machine a result was produced on, stored beside every figure."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import mlsyskit


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe_environment() -> dict[str, object]:
    """Python, platform, core count, key package versions, accelerator, commit and time."""
    accelerator = "none"
    torch_version = _version("torch")
    if torch_version is not None:
        import torch

        if torch.cuda.is_available():
            accelerator = torch.cuda.get_device_name(0)
    return {
        "mlsyskit": mlsyskit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "num_cpus": os.cpu_count(),
        "torch": torch_version,
        "accelerator": accelerator,
        "git_commit": _git_commit(),
        "utc_time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
