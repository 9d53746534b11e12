"""Errors of the Optimus package."""

from __future__ import annotations

from mlsyskit.errors import ConfigError, MlsyskitError


class OptimusError(MlsyskitError):
    """A schedule or plan that cannot be produced (e.g. no encoder plan fits in memory)."""


class OptimusConfigError(ConfigError):
    """A malformed or impossible Optimus model/cluster description."""
