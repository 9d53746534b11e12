from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.minder.continuity import detect_pass, first_alert
from mlsyskit.training.minder.scorers import ScoreSet

MACHINES = ("m0", "m1", "m2")


def _scores(top: list[int], value: float = 1.0) -> np.ndarray:
    """Machine ``top[t]`` scores ``value`` at point t, others 0 (-1 means nobody is high)."""
    s = np.zeros((3, len(top)))
    for t, m in enumerate(top):
        if m >= 0:
            s[m, t] = value
    return s


def test_alert_after_the_same_machine_stays_for_the_continuity() -> None:
    times = np.arange(10.0, 20.0)
    # m1 is the candidate from t=12 on; continuity 3 s -> alert at t=15
    scores = _scores([0, -1, 1, 1, 1, 1, 1, 1, 1, 1])
    alert = first_alert(scores, times, MACHINES, threshold=0.5, continuity_s=3, metric="cpu")
    assert alert is not None
    assert (alert.machine, alert.metric, alert.first_seen, alert.alert_time) == (
        "m1", "cpu", 12.0, 15.0)


def test_a_candidate_switch_or_a_dip_restarts_the_count() -> None:
    times = np.arange(0.0, 8.0)
    switch = _scores([1, 1, 2, 1, 1, 2, 1, 1])
    assert first_alert(switch, times, MACHINES, 0.5, 2) is None
    dip = _scores([1, 1, -1, 1, 1, 1, 1, 1])
    alert = first_alert(dip, times, MACHINES, 0.5, 2)
    assert alert is not None and alert.first_seen == 3 and alert.alert_time == 5


def test_below_threshold_never_alerts_and_zero_continuity_alerts_at_once() -> None:
    times = np.arange(0.0, 5.0)
    scores = _scores([2, 2, 2, 2, 2], value=0.4)
    assert first_alert(scores, times, MACHINES, 0.5, 0) is None
    alert = first_alert(_scores([-1, 2, -1, -1, -1]), times, MACHINES, 0.5, 0)
    assert alert is not None and alert.machine == "m2" and alert.alert_time == 1


def test_detect_pass_tries_channels_in_priority_order() -> None:
    times = np.arange(0.0, 6.0)
    cpu = _scores([1] * 6)
    pfc = _scores([2] * 6)
    s = ScoreSet(("cpu", "pfc"), MACHINES, np.stack([cpu, pfc]), times)
    thresholds = {"cpu": 0.5, "pfc": 0.5}
    first = detect_pass(s, thresholds, ["pfc", "cpu"], 2)
    assert first is not None and first.metric == "pfc" and first.machine == "m2"
    high = detect_pass(s, {"cpu": 0.5, "pfc": 2.0}, ["pfc", "cpu"], 2)
    assert high is not None and high.metric == "cpu"
    assert detect_pass(s, thresholds, ["absent"], 2) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1, 2), min_size=1, max_size=40), st.integers(0, 10))
def test_alert_iff_a_run_is_long_enough(top: list[int], need: int) -> None:
    times = np.arange(float(len(top)))
    alert = first_alert(_scores(top), times, MACHINES, 0.5, float(need))
    # reference: scan for the first run of one machine with > need points after its start
    expected = None
    run_start, prev = 0, None
    for t, m in enumerate(top):
        if m != prev:
            run_start, prev = t, m
        if m >= 0 and t - run_start == need:
            expected = (MACHINES[m], float(run_start), float(t))
            break
    got = None if alert is None else (alert.machine, alert.first_seen, alert.alert_time)
    assert got == expected
