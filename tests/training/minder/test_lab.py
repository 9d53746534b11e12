from __future__ import annotations

import pandas as pd
import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.training.minder.lab import LabConfig, fault_effect, find_prometheus, run_lab
from mlsyskit.training.minder.lab_faults import LabFault


def test_lab_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="num_workers"):
        LabConfig(num_workers=9)
    with pytest.raises(ConfigError, match="faults must be among 'slow', 'pause', 'hog'"):
        LabConfig(faults=("slow", "melt"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least one"):
        LabConfig(faults=())
    with pytest.raises(ConfigError, match="victim"):
        LabConfig(num_workers=4, victim=4)
    with pytest.raises(ConfigError, match="num_hogs"):
        LabConfig(num_hogs=0)
    with pytest.raises(ConfigError, match="continuity_s"):
        LabConfig(continuity_s=0)


def test_lab_config_parses_faults_and_rotates_victims() -> None:
    config = LabConfig(num_workers=4, faults="hog", victim=3)  # type: ignore[arg-type]
    assert config.faults == (LabFault.hog,)
    config = LabConfig(num_workers=4, faults=("slow", "hog", "pause"),  # type: ignore[arg-type]
                       victim=3, continuity_s=20, interval_s=5)
    assert config.faults == (LabFault.slow, LabFault.hog, LabFault.pause)
    assert [config.victim_of(k) for k in range(3)] == [3, 0, 1]
    assert config.budget_s() == 20 + 5 + 8 + 5
    assert config.budget_s(pass_s=2.5) == 20 + 5 + 2.5 + 8 + 5


def test_fault_effect_compares_the_victim_with_its_peers_median() -> None:
    rows = [(t, m, "compute_fraction", v) for t in (0.0, 1.0)
            for m, v in (("a", 0.1), ("b", 0.2), ("c", 0.4))]
    normal = pd.DataFrame(rows, columns=["timestamp", "machine", "metric", "value"])
    during = normal.assign(timestamp=normal["timestamp"] + 10,
                           value=normal["value"].where(normal["machine"] != "a", 0.9))
    table = pd.concat([normal, during])
    effect = fault_effect(table, normal, "a", injected_s=10.0)
    assert effect == {"compute_fraction": pytest.approx((0.9, 0.3, 0.1, 0.3))}


@pytest.mark.slow
@pytest.mark.skipif(find_prometheus() is None, reason="needs the prometheus binary")
def test_live_lab_names_the_slowed_and_the_hogged_worker() -> None:
    config = LabConfig(num_workers=4, faults=(LabFault.slow, LabFault.hog), normal_s=40,
                       continuity_s=20, interval_s=5, recover_s=15)
    report = run_lab(config)
    assert [r.fault for r in report.runs] == [LabFault.slow, LabFault.hog]
    for run in report.runs:
        assert run.alert is not None
        assert run.alert.machine == run.victim
    assert report.runs[0].victim != report.runs[1].victim
