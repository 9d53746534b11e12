"""Minder's errors: bad input is a :class:`~mlsyskit.errors.DataError`, the rest a MinderError."""

from __future__ import annotations

from mlsyskit.errors import MlsyskitError


class MinderError(MlsyskitError):
    """A detection run that cannot go on (an unfitted model, an unreachable Prometheus)."""


class NotFittedError(MinderError):
    """``detect``/``transform`` was called before ``fit``."""

    exit_code = 2
