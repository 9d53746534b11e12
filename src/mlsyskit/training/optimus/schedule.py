"""The one type the scheduler, the pipeline simulator and the replay checker share.

A :class:`Schedule` is a flat list of timed tasks (kernels and DP collectives) on the devices
of one simulated pipeline column, plus the dependency edges its producer claims.  The replay
checker (:mod:`mlsyskit.training.optimus.replay`) does not trust either: it re-derives the
rules from the task metadata and re-executes the task graph on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mlsyskit.training.optimus.costmodel import Direction


class Resource(Enum):
    """What a task occupies on its device.

    ``COMPUTE`` is the compute stream (LLM and encoder kernels), ``LINK`` the intra-node TP
    links (LLM and encoder TP collectives), ``DP_LINK`` the NIC used by DP collectives.
    """

    COMPUTE = "compute"
    LINK = "link"
    DP_LINK = "dp_link"


class Owner(Enum):
    LLM = "llm"
    ENCODER = "encoder"
    DP = "dp"


@dataclass(frozen=True)
class Task:
    """One timed piece of work.

    ``stage`` is the LLM virtual stage or the encoder stage; ``pipeline`` the encoder
    pipeline (-1 for the LLM); ``mb`` the LLM microbatch or the encoder pipeline's local one;
    ``index`` the kernel's position in its op.

    ``release_s`` is a deliberate delay the producer wants kept: the task may not start
    before it even when its dependencies allow (e.g. a deferred LLM forward, the pinned start
    of a device's LLM work).  A static schedule only means something if every such delay is
    written down, so the replay honours it instead of silently starting the task earlier.

    DP collectives (``owner`` DP) say what they carry: ``direction`` is ``FWD`` for a
    parameter all-gather (needed before the first forward), ``BWD`` for a gradient
    reduce-scatter (possible only after the last backward); ``params_of`` names whose
    parameters (``Owner.LLM``: the device's LLM stages, including any encoder layers placed
    inside them; ``Owner.ENCODER``: the device's encoder stages).
    """

    tid: int
    device: int
    resource: Resource
    start_s: float
    end_s: float
    owner: Owner
    direction: Direction | None
    stage: int
    mb: int
    pipeline: int
    index: int
    name: str
    release_s: float = 0.0
    params_of: Owner | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Dep:
    """``after`` may start only ``lag_s`` after ``before`` ends."""

    before: int
    after: int
    lag_s: float = 0.0


@dataclass(frozen=True)
class Schedule:
    """A complete iteration of one pipeline column.

    Parameters
    ----------
    name
        e.g. ``"optimus-fine"``.
    num_devices
        Devices of the column (LLM pipeline stages).
    tasks, deps
        The timed tasks and the producer's dependency edges.
    makespan_s
        The producer's own estimate of the iteration time.
    llm_pp, llm_p2p_s
        LLM pipeline depth (virtual stage ``v`` lives on device ``v % llm_pp``) and P2P lag.
    enc_stages, enc_p2p_s, enc_to_llm_s
        Encoder pipeline depth, lag between encoder stages, lag encoder -> LLM stage 0.
    multiplicity
        Identical encoder pipelines along the TP axis per simulated one (each encoder
        microbatch of this column stands for that many LLM microbatches).
    """

    name: str
    num_devices: int
    tasks: tuple[Task, ...]
    deps: tuple[Dep, ...]
    makespan_s: float
    llm_pp: int
    llm_p2p_s: float
    enc_stages: int = 0
    enc_p2p_s: float = 0.0
    enc_to_llm_s: float = 0.0
    multiplicity: int = 1
