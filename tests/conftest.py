"""Shared test fixtures."""

from __future__ import annotations

import os

# Multi-process tests share 2 cores: one torch thread per process keeps them from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
