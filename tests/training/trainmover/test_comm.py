"""Cutting a generation's sockets: peers see the failure at once, listeners are left alone."""

from __future__ import annotations

import socket

from mlsyskit.training.trainmover.comm import abort_sockets, socket_fds


def test_abort_shuts_connections_but_not_listeners() -> None:
    before = socket_fds()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname()[:2])
    peer, _ = server.accept()
    opened = socket_fds() - before
    assert {server.fileno(), client.fileno(), peer.fileno()} <= opened
    try:
        abort_sockets(frozenset({client.fileno(), server.fileno()}))
        assert peer.recv(16) == b""  # the peer sees end-of-stream immediately
        assert client.fileno() >= 0  # still open: owned by its user, not closed under it
        again = socket.create_connection(server.getsockname()[:2])  # listener still accepts
        accepted, _ = server.accept()
        again.close()
        accepted.close()
    finally:
        for sock in (client, peer, server):
            sock.close()
