from __future__ import annotations

import numpy as np

from mlsyskit.federated.fielding.model import (
    ModelSpec,
    evaluate,
    init_params,
    train_local,
    train_local_autograd,
)


def test_hand_written_gradient_matches_autograd() -> None:
    spec = ModelSpec(input_dim=12, num_classes=4, hidden=8, lr=0.1, batch_size=5, local_epochs=2)
    rng = np.random.default_rng(0)
    x = rng.random((23, 12), dtype=np.float32)
    y = rng.integers(0, 4, 23)
    start = init_params(spec, 3)
    fast = train_local(start, x, y, spec, seed=7)
    ref = train_local_autograd(start, x, y, spec, seed=7)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert evaluate(fast, x, y)[0] < evaluate(start, x, y)[0]  # it learns
    np.testing.assert_array_equal(start[0], init_params(spec, 3)[0])  # input not mutated
