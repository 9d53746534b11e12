"""TrainMover's errors, all under :class:`mlsyskit.errors.MlsyskitError`.

::

    MlsyskitError
    └── TrainMoverError          a replacement or job that could not complete as asked
        ├── JobTimeoutError      the job did not reach a state in time (a hung worker, a lost store)
        └── ReplacementFailed    a replacement gave up (no joiner left, no replica to copy from)
"""

from __future__ import annotations

from mlsyskit.errors import MlsyskitError


class TrainMoverError(MlsyskitError):
    """A TrainMover job or replacement could not complete as asked."""


class JobTimeoutError(TrainMoverError):
    """The job did not reach an expected state within its timeout."""


class ReplacementFailed(TrainMoverError):
    """A replacement gave up; the message says why and what state the job is in."""
