"""Free intervals of one resource of one device, for first-fit kernel packing.

The bubble scheduler places encoder kernels one after another into the idle periods of the
LLM timeline; this class answers "earliest start >= t where a kernel of length d fits before
the deadline" and carves the chosen interval out.
"""

from __future__ import annotations

from bisect import bisect_right

EPS = 1e-12


class GapList:
    """Sorted, disjoint free intervals ``[starts[i], ends[i])``."""

    __slots__ = ("ends", "starts")

    def __init__(self, starts: list[float], ends: list[float]) -> None:
        self.starts = starts
        self.ends = ends

    def copy(self) -> GapList:
        return GapList(list(self.starts), list(self.ends))

    def total(self) -> float:
        return sum(e - s for s, e in zip(self.starts, self.ends, strict=True))

    def find(self, ready: float, duration: float, deadline: float) -> float | None:
        """Earliest start >= ``ready`` of a ``duration`` kernel ending by ``deadline``."""
        i = bisect_right(self.ends, ready)
        starts, ends = self.starts, self.ends
        n = len(starts)
        while i < n:
            st = starts[i] if starts[i] > ready else ready
            if st + duration > deadline + EPS:
                return None
            if st + duration <= ends[i] + EPS:
                return st
            i += 1
        return None

    def occupy(self, start: float, end: float) -> None:
        """Remove ``[start, end)``, which must lie inside one free interval."""
        i = bisect_right(self.ends, start)
        if i >= len(self.starts) and self.ends and abs(self.ends[-1] - start) <= EPS:
            i = len(self.starts) - 1
        if i >= len(self.starts) or self.starts[i] > start + EPS or end > self.ends[i] + EPS:
            raise ValueError(f"[{start}, {end}) is not free")
        s0, e0 = self.starts[i], self.ends[i]
        pieces = [(a, b) for a, b in ((s0, start), (end, e0)) if b - a > EPS]
        self.starts[i : i + 1] = [a for a, _ in pieces]
        self.ends[i : i + 1] = [b for _, b in pieces]


def gaps_from_busy(busy: list[tuple[float, float]], lo: float, hi: float) -> GapList:
    """Complement of sorted busy intervals inside ``[lo, hi)``."""
    starts, ends = [], []
    t = lo
    for b0, b1 in busy:
        if b0 > t + EPS:
            starts.append(t)
            ends.append(min(b0, hi))
        t = max(t, b1)
        if t >= hi:
            break
    if hi > t + EPS:
        starts.append(t)
        ends.append(hi)
    return GapList(starts, ends)
