from __future__ import annotations

import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.training.minder.lab import LabConfig, find_prometheus, run_lab


def test_lab_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="num_workers"):
        LabConfig(num_workers=9)
    with pytest.raises(ConfigError, match="fault"):
        LabConfig(fault="melt")
    with pytest.raises(ConfigError, match="victim"):
        LabConfig(num_workers=4, victim=4)


@pytest.mark.slow
@pytest.mark.skipif(find_prometheus() is None, reason="needs the prometheus binary")
def test_live_lab_names_the_slowed_worker() -> None:
    report = run_lab(LabConfig(num_workers=4, normal_s=40, continuity_s=20, interval_s=5))
    assert report.alert is not None
    assert report.alert.machine == report.victim
