"""Real data sets, read from disk only: Fashion-MNIST (Debian package) and scikit-learn digits.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (the Makefile's
``system-deps`` installs it). A missing file is an error naming the package, never a silent
switch to synthetic data.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import numpy as np

from mlsyskit.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


class DatasetName(StrEnum):
    FASHION_MNIST = "fashion-mnist"
    DIGITS = "digits"


@dataclass(frozen=True)
class Dataset:
    """Train and test splits, inputs flattened float32 in [0, 1], labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_side: int
    num_classes: int

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: magic 0x0000 08 NDIM, then NDIM big-endian int32 sizes.

    Raises
    ------
    DataError
        The file is missing (the message names the Debian package) or malformed.
    """
    if not path.exists():
        raise DataError(
            f"{path} not found: install the Debian package {FASHION_MNIST_PACKAGE} "
            f"(apt-get install -y {FASHION_MNIST_PACKAGE}, or `make system-deps`)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


@lru_cache(maxsize=2)
def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> Dataset:
    """Fashion-MNIST, 60 000 train and 10 000 test 28x28 images of 10 classes."""
    def part(stem: str) -> np.ndarray:
        return read_idx(root / f"{stem}.gz")

    x_tr = part("train-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255.0
    x_te = part("t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255.0
    y_tr = part("train-labels-idx1-ubyte").astype(np.int64)
    y_te = part("t10k-labels-idx1-ubyte").astype(np.int64)
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise DataError(f"{root}: image and label counts differ")
    return Dataset("fashion-mnist", x_tr, y_tr, x_te, y_te, 28, 10)


@lru_cache(maxsize=1)
def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1 797 images), split 75/25 with a fixed seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.75 * len(x))
    tr, te = order[:cut], order[cut:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 8, 10)


def load_dataset(name: DatasetName) -> Dataset:
    return load_fashion_mnist() if name is DatasetName.FASHION_MNIST else load_digits_dataset()
