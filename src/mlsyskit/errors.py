"""The one exception tree of mlsyskit.

::

    MlsyskitError                  every error this project raises on purpose
    ├── ConfigError                an impossible or malformed configuration / input file
    │   └── HardwareCatalogueError a bad hardware TOML file or an unknown device name
    ├── UnknownNameError           a name (system, model, policy, ...) that is not registered
    ├── DataError                  a malformed trace, metric table or data set
    ├── BenchmarkError             a benchmark that could not run to completion
    └── NotImplementedSystemError  a system (or verb) that is not built yet

The CLI maps every ``MlsyskitError`` to a clear message and exit code 2 (bad input) or 1
(a run that failed), so a user never sees a traceback for their own mistake.
"""

from __future__ import annotations

from collections.abc import Iterable


class MlsyskitError(Exception):
    """Root of all errors raised on purpose by mlsyskit."""

    exit_code: int = 1


class ConfigError(MlsyskitError):
    """An impossible or malformed configuration or input file."""

    exit_code = 2


class HardwareCatalogueError(ConfigError):
    """A hardware catalogue file is malformed, or a device name is unknown."""


class UnknownNameError(MlsyskitError):
    """A name that is not registered; the message lists the known ones."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known) or '(none)'}")


class DataError(MlsyskitError):
    """A malformed trace, metric table or data set (the message names file and line)."""

    exit_code = 2


class BenchmarkError(MlsyskitError):
    """A benchmark could not run to completion."""


class NotImplementedSystemError(MlsyskitError):
    """A system, or one of its verbs, is not built yet."""
