"""Names of the coordination-store keys, in one place (controller and members share them).

The store is torch's ``TCPStore`` held by the controller; every group of every generation lives
under its own ``PrefixStore`` prefix of it (``g0`` at start, ``p<seq>`` after a plan, ``r<n>`` after
a restart), so generations never collide.
"""

from __future__ import annotations

PLAN_SEQ = "plan_seq"
MEMBERS = "members"
REQUEST_SEQ = "request_seq"


def plan(seq: int) -> str:
    return f"plan/{seq}"


def abort(seq: int) -> str:
    return f"abort/{seq}"


def switched(seq: int, proc: str) -> str:
    return f"switched/{seq}/{proc}"


def joined(seq: int) -> str:
    return f"joined/{seq}"


def timing(seq: int, proc: str) -> str:
    return f"timing/{seq}/{proc}"


def heartbeat(proc: str) -> str:
    return f"hb/{proc}"


def progress(proc: str) -> str:
    return f"it/{proc}"


def failed(proc: str) -> str:
    return f"failed/{proc}"


def done(proc: str) -> str:
    return f"done/{proc}"


def records(stage: int) -> str:
    return f"records/{stage}"


def standby_free(proc: str) -> str:
    return f"sb/{proc}/free"


def standby_warm(proc: str) -> str:
    return f"sb/{proc}/warm"


def slow(proc: str) -> str:
    return f"slow/{proc}"


def pid(proc: str) -> str:
    return f"pid/{proc}"


def request(seq: int) -> str:
    return f"request/{seq}"


def inject(proc: str) -> str:
    return f"inject/{proc}"
