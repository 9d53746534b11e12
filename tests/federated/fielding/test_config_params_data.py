from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.federated.fielding.config import CentreRule, FieldingConfig, ReclusterRule
from mlsyskit.federated.fielding.data import load_fashion_mnist, read_idx
from mlsyskit.federated.fielding.kmeans import choose_k, silhouette
from mlsyskit.federated.fielding.params import mix_models, weighted_average


def test_run_config_is_parsed_once_into_typed_values() -> None:
    cfg = FieldingConfig.from_run_config(
        {"drift-threshold": "0.2", "max-clusters": 4, "recluster": "moves_only",
         "fielding-centre-rule": "median", "num-server-rounds": 5}
    )
    assert cfg.drift_threshold == 0.2 and cfg.max_clusters == 4
    assert cfg.recluster is ReclusterRule.MOVES_ONLY and cfg.centre_rule is CentreRule.MEDIAN


def test_run_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="fielding-nope"):
        FieldingConfig.from_run_config({"fielding-nope": 1})
    with pytest.raises(ConfigError, match="max_clusters"):
        FieldingConfig.from_run_config({"max-clusters": 2.5})
    with pytest.raises(ConfigError, match=r"drift_threshold must be in \[0, 1\]; got 1\.5"):
        FieldingConfig(drift_threshold=1.5)


def test_weighted_average_and_mixing_by_hand() -> None:
    m1 = [np.array([1.0, 2.0], np.float32)]
    m2 = [np.array([3.0, 6.0], np.float32)]
    avg = weighted_average([m1, m2], [1, 3])
    np.testing.assert_allclose(avg[0], [2.5, 5.0])
    assert avg[0].dtype == np.float32
    mixed = mix_models([m1, m2], np.array([[1.0, 0.0], [0.5, 0.5]]))
    np.testing.assert_allclose(mixed[0][0], [1, 2])
    np.testing.assert_allclose(mixed[1][0], [2, 4])


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_roundtrip_and_errors(tmp_path: Path) -> None:
    arr = np.arange(24).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x08\x08\x08\x01abcd")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "missing")


def test_real_fashion_mnist_shapes() -> None:
    ds = load_fashion_mnist()
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0


def test_choose_k_three_blobs_and_noise() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(3)
    x = np.vstack([c + rng.normal(0, 0.01, (10, 3)) for c in centres])
    found = choose_k(x, 6, 0.25, np.random.default_rng(0))
    assert found.num_clusters == 3
    for g in range(3):
        assert len(set(found.labels[10 * g : 10 * g + 10])) == 1
    noise = rng.normal(0, 1, (40, 5))
    assert choose_k(noise, 6, 0.25, np.random.default_rng(0)).num_clusters == 1


def test_silhouette_by_hand() -> None:
    # two pairs on a line: {0, 1} and {10, 11}: a = 1, b = 10 (point 0), 9 (point 1)
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1])
    expected = np.mean([(10.5 - 1) / 10.5, (9.5 - 1) / 9.5, (9.5 - 1) / 9.5, (10.5 - 1) / 10.5])
    assert silhouette(x, labels, np.random.default_rng(0)) == pytest.approx(expected)
    assert silhouette(x, np.zeros(4, int), np.random.default_rng(0)) == -1.0
