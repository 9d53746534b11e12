"""Errors of the serving engine (all subclasses of :class:`mlsyskit.errors.MlsyskitError`)."""

from __future__ import annotations

from mlsyskit.errors import ConfigError, MlsyskitError


class ServingError(MlsyskitError):
    """The engine reached a state it cannot go on from (a bug or an impossible request)."""


class KVCacheError(ServingError):
    """A block-manager call that breaks its contract (double free, unknown request, ...)."""


class RequestTooLargeError(ConfigError):
    """A request can never be scheduled: it needs more KV blocks or tokens than the engine has."""
