"""A ring all-reduce over plain TCP sockets, with member replacement at the connection level.

This is the paper's delta switchover made visible: in a ring each member holds exactly two
connections (to its predecessor and its successor), so replacing one member changes exactly two
connections (predecessor -> joiner, joiner -> successor) whatever the ring size, while rebuilding
the group opens all ``n`` (a full mesh, as gloo's bootstrap builds, opens ``n (n - 1) / 2``).
Every ``connect()`` is counted, so the claim is measured rather than asserted.

numpy only, no torch: members are threads of one process talking over loopback sockets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

import numpy as np

from mlsyskit.training.trainmover.errors import TrainMoverError


def _recv_exact(sock: socket.socket, num_bytes: int) -> bytes:
    chunks = []
    remaining = num_bytes
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise TrainMoverError("ring: peer closed the connection mid-message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class RingMember:
    """One ring member: a listening socket, a link to its successor and one from its predecessor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.right: socket.socket | None = None  # we send to the successor
        self.left: socket.socket | None = None  # we receive from the predecessor

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        for sock in (self.right, self.left, self.listener):
            if sock is not None:
                sock.close()
        self.right = self.left = None


class SocketRing:
    """``n`` members in a ring; :meth:`all_reduce` sums one vector per member.

    Parameters
    ----------
    num_members
        Ring size (at least 2).
    """

    def __init__(self, num_members: int) -> None:
        if num_members < 2:
            raise TrainMoverError(f"a ring needs at least 2 members; got {num_members}")
        self.members = [RingMember(f"m{i}") for i in range(num_members)]
        self.num_connects = 0
        self._next_name = num_members
        for i in range(num_members):
            self._link(self.members[i], self.members[(i + 1) % num_members])

    def __enter__(self) -> SocketRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for member in self.members:
            member.close()

    def _link(self, sender: RingMember, receiver: RingMember) -> None:
        """Open the one connection ``sender -> receiver`` (counted), replacing older ones."""
        out = socket.create_connection(receiver.address)
        out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        incoming, _ = receiver.listener.accept()
        self.num_connects += 1
        if sender.right is not None:
            sender.right.close()
        if receiver.left is not None:
            receiver.left.close()
        sender.right, receiver.left = out, incoming

    def replace(self, index: int) -> int:
        """Replace member ``index`` by a new one; returns the connections that were opened.

        Only the leaver's neighbours rewire: predecessor -> joiner and joiner -> successor.
        """
        n = len(self.members)
        if not 0 <= index < n:
            raise TrainMoverError(f"ring has members 0..{n - 1}; cannot replace {index}")
        before = self.num_connects
        joiner = RingMember(f"m{self._next_name}")
        self._next_name += 1
        leaver = self.members[index]
        self._link(self.members[(index - 1) % n], joiner)
        self._link(joiner, self.members[(index + 1) % n])
        leaver.close()
        self.members[index] = joiner
        return self.num_connects - before

    def rebuild(self) -> int:
        """Tear down and reconnect the whole ring (the restart way); returns connections opened."""
        before = self.num_connects
        n = len(self.members)
        for member in self.members:
            for sock in (member.left, member.right):
                if sock is not None:
                    sock.close()
            member.left = member.right = None
        for i in range(n):
            self._link(self.members[i], self.members[(i + 1) % n])
        return self.num_connects - before

    def all_reduce(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Ring all-reduce (reduce-scatter, then all-gather) of one float64 vector per member."""
        n = len(self.members)
        if len(values) != n:
            raise TrainMoverError(f"all_reduce needs {n} vectors; got {len(values)}")
        bufs = [np.array(v, dtype=np.float64, copy=True) for v in values]
        bounds = np.linspace(0, bufs[0].size, n + 1).astype(int)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                member, buf = self.members[i], bufs[i]
                assert member.left is not None and member.right is not None
                for phase in ("reduce", "gather"):
                    for step in range(n - 1):
                        shift = 0 if phase == "reduce" else 1
                        send_c = (i - step + shift) % n
                        recv_c = (i - step - 1 + shift) % n
                        data = buf[bounds[send_c] : bounds[send_c + 1]].tobytes()
                        sender = threading.Thread(target=member.right.sendall, args=(data,))
                        sender.start()
                        size = (bounds[recv_c + 1] - bounds[recv_c]) * 8
                        got = np.frombuffer(_recv_exact(member.left, int(size)), np.float64)
                        sender.join()
                        part = buf[bounds[recv_c] : bounds[recv_c + 1]]
                        if phase == "reduce":
                            part += got
                        else:
                            part[:] = got
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        if errors:
            raise TrainMoverError(f"ring all-reduce failed: {errors[0]!r}")
        return bufs
