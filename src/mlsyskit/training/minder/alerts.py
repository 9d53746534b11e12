"""Alerts: what Minder reports, and where it sends it (JSON lines on a stream, or a webhook)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TextIO

from mlsyskit.training.minder.errors import MinderError


@dataclass(frozen=True)
class Alert:
    """Minder names ``machine`` as faulty.

    Attributes
    ----------
    machine
        The machine that stayed the most dissimilar from its peers.
    metric
        The metric (channel) that showed it; ``"all"`` for whole-vector scorers.
    first_seen
        Timestamp (s) of the first window of the continuous run that led to the alert.
    alert_time
        Timestamp (s) at which the run reached the continuity duration.
    score
        The normalised score at ``alert_time`` (distance units above the group median).
    job
        Job or trace the alert is about (empty when there is only one).
    """

    machine: str
    metric: str
    first_seen: float
    alert_time: float
    score: float
    job: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)


def write_jsonl(alerts: list[Alert], stream: TextIO) -> None:
    """One JSON object per line."""
    for alert in alerts:
        stream.write(alert.to_json() + "\n")
    stream.flush()


def post_webhook(alerts: list[Alert], url: str, timeout_s: float = 5.0,
                 transport: object | None = None) -> None:
    """POST each alert as JSON to ``url``; a failed delivery raises :class:`MinderError`."""
    import httpx

    kwargs: dict[str, object] = {"timeout": timeout_s}
    if transport is not None:
        kwargs["transport"] = transport
    with httpx.Client(**kwargs) as client:  # type: ignore[arg-type]
        for alert in alerts:
            try:
                response = client.post(url, json=asdict(alert))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise MinderError(f"webhook {url}: cannot deliver alert: {exc}") from exc
