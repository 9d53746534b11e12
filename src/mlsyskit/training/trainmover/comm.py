"""The communication seam of a training step, with a real (gloo), a recording and a replay side.

A training step only calls :class:`Comm`. That is what lets the same step code run

* for real, on generation-numbered gloo groups (:class:`GlooComm`), each built from a
  ``PrefixStore`` over the job's one ``TCPStore``, so a new generation can be prepared while the
  current one trains (phase 1) and swapped in at an iteration boundary (phase 2);
* once at job start under :class:`RecordingComm`, which keeps every collective's output;
* inside a standby's sandbox under :class:`ReplayComm`, which answers collectives from those
  recordings and drops sends, so a shadow iteration needs no peer at all.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from mlsyskit.training.trainmover.errors import TrainMoverError

if TYPE_CHECKING:
    import torch
    import torch.distributed as dist

# A gloo process group. torch's stubs do not declare ProcessGroupGloo's collectives, so the
# type stays open here instead of sprinkling ignores over every call.
Group: TypeAlias = Any


class Comm(Protocol):
    """Collectives a step needs. ``dp`` is the replica group of the caller's stage."""

    def dp_all_reduce(self, tensor: torch.Tensor) -> None: ...

    def ctrl_all_reduce(self, tensor: torch.Tensor) -> None: ...

    def send(self, tensor: torch.Tensor, dst_rank: int) -> None: ...

    def recv(self, tensor: torch.Tensor, src_rank: int) -> None: ...


def new_gloo_group(
    store: dist.Store, prefix: str, rank: int, size: int, timeout_s: float
) -> Group:
    """A gloo group over ``PrefixStore(prefix, store)``; blocks until all ``size`` members join."""
    import torch.distributed as dist

    return dist.ProcessGroupGloo(
        dist.PrefixStore(prefix, store), rank, size, datetime.timedelta(seconds=timeout_s)
    )


def _all_reduce(group: Group, tensor: torch.Tensor, op: str) -> None:
    import torch.distributed as dist

    opts = dist.AllreduceOptions()
    opts.reduceOp = dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM  # type: ignore[assignment]
    group.allreduce([tensor], opts).wait()


def broadcast(group: Group, tensor: torch.Tensor, root: int) -> None:
    """In-place broadcast from ``root`` (a receiver's own tensor is overwritten, no copy made)."""
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = root
    group.broadcast([tensor], opts).wait()


def all_reduce_max(group: Group, tensor: torch.Tensor) -> None:
    _all_reduce(group, tensor, "max")


@dataclass
class GroupSet:
    """One generation's groups as seen by one rank: the world group and its stage's dp group.

    ``socket_fds`` are the sockets the groups opened, so that :func:`abort_sockets` can cut
    them (gloo has no communicator abort; destroying a group blocks the interpreter).
    """

    world: Group
    dp: Group
    socket_fds: frozenset[int] = frozenset()


def socket_fds() -> frozenset[int]:
    """This process's open socket file descriptors."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                out.add(int(name))
    return frozenset(out)


def abort_sockets(fds: frozenset[int]) -> None:
    """Shut down (not close) the given connections: every peer's pending collective fails
    at once. The descriptors stay open and owned by gloo, so nothing is used after close;
    listening sockets are left alone.
    """
    for fd in fds:
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=fd)
            try:
                # a listening socket is gloo's acceptor: shutting it down kills the process
                if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()


def build_groups(
    store: dist.Store,
    prefix: str,
    rank: int,
    num_workers: int,
    pp: int,
    timeout_s: float,
) -> GroupSet:
    """Build one generation's groups (the dp group is the world group when ``pp == 1``)."""
    before = socket_fds()
    world = new_gloo_group(store, f"{prefix}/world", rank, num_workers, timeout_s)
    dp = world
    if pp > 1:
        dp_size = num_workers // pp
        stage = rank // dp_size
        dp = new_gloo_group(store, f"{prefix}/dp{stage}", rank % dp_size, dp_size, timeout_s)
    # may include a socket another thread opened meanwhile; aborting is only ever done to a
    # generation being abandoned, whose thread-local store client is not used any more
    return GroupSet(world=world, dp=dp, socket_fds=socket_fds() - before)


class GlooComm:
    """:class:`Comm` over one generation's :class:`GroupSet` (gloo; NCCL would slot in alike)."""

    def __init__(self, groups: GroupSet) -> None:
        self.groups = groups

    def dp_all_reduce(self, tensor: torch.Tensor) -> None:
        _all_reduce(self.groups.dp, tensor, "sum")

    def ctrl_all_reduce(self, tensor: torch.Tensor) -> None:
        _all_reduce(self.groups.world, tensor, "max")

    def send(self, tensor: torch.Tensor, dst_rank: int) -> None:
        self.groups.world.send([tensor], dst_rank, 0).wait()

    def recv(self, tensor: torch.Tensor, src_rank: int) -> None:
        self.groups.world.recv([tensor], src_rank, 0).wait()


class RecordingComm:
    """Wraps a real :class:`Comm` and keeps a copy of every collective's *output*, in call order.

    Sends produce nothing to record (the sandbox bypasses them), so only all-reduces and receives
    are kept. Used for the first iteration of each stage's first replica only, then dropped.
    """

    def __init__(self, inner: Comm) -> None:
        self.inner = inner
        self.records: list[tuple[str, torch.Tensor]] = []

    def dp_all_reduce(self, tensor: torch.Tensor) -> None:
        self.inner.dp_all_reduce(tensor)
        self.records.append(("dp_all_reduce", tensor.detach().clone()))

    def ctrl_all_reduce(self, tensor: torch.Tensor) -> None:
        self.inner.ctrl_all_reduce(tensor)
        self.records.append(("ctrl_all_reduce", tensor.detach().clone()))

    def send(self, tensor: torch.Tensor, dst_rank: int) -> None:
        self.inner.send(tensor, dst_rank)

    def recv(self, tensor: torch.Tensor, src_rank: int) -> None:
        self.inner.recv(tensor, src_rank)
        self.records.append(("recv", tensor.detach().clone()))


class ReplayComm:
    """Answers collectives from recordings, in order; sends are bypassed.

    Raises
    ------
    TrainMoverError
        The step asks for a different collective (or shape) than was recorded: the recording is
        from another role or another model, and a shadow iteration on it would not be valid.
    """

    def __init__(self, records: list[tuple[str, torch.Tensor]]) -> None:
        self.records = records
        self.position = 0
        self.num_bypassed = 0

    def _next(self, kind: str, tensor: torch.Tensor) -> None:
        if self.position >= len(self.records):
            raise TrainMoverError(f"replay: no recorded output left for {kind}")
        rec_kind, value = self.records[self.position]
        if rec_kind != kind or tuple(value.shape) != tuple(tensor.shape):
            raise TrainMoverError(
                f"replay: call {self.position} is {kind}{tuple(tensor.shape)} but the recording "
                f"has {rec_kind}{tuple(value.shape)}"
            )
        tensor.copy_(value)
        self.position += 1

    def dp_all_reduce(self, tensor: torch.Tensor) -> None:
        self._next("dp_all_reduce", tensor)

    def ctrl_all_reduce(self, tensor: torch.Tensor) -> None:
        self._next("ctrl_all_reduce", tensor)

    def send(self, tensor: torch.Tensor, dst_rank: int) -> None:
        self.num_bypassed += 1

    def recv(self, tensor: torch.Tensor, src_rank: int) -> None:
        self._next("recv", tensor)
