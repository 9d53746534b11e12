"""Two clocks, one engine: wall time for the real executor, simulated time for the simulator."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the engine started."""

    def now(self) -> float: ...

    def advance(self, seconds: float) -> None:
        """Account for a step that took ``seconds`` (a no-op on a wall clock)."""

    def advance_to(self, t: float) -> None:
        """Move to time ``t`` while nothing runs (sleeps on a wall clock)."""


class SimClock:
    """A simulated clock: time moves only when told (discrete-event simulation)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def advance_to(self, t: float) -> None:
        if t > self._now:
            self._now = t


class WallClock:
    """Real time from ``time.perf_counter``, zero at construction."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def advance(self, seconds: float) -> None:
        """Time already passed while the step ran."""

    def advance_to(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)
