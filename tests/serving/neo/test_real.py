"""The real NEO executor: pipelined host attention gives the device-only engine's logits."""

from __future__ import annotations

import pytest
import torch

from mlsyskit.serving.executor.torch_executor import TorchExecutor
from mlsyskit.serving.neo.profiler import profile_tables
from mlsyskit.serving.neo.real import pipelined_parity


@pytest.fixture(autouse=True)
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_pipelined_logits_equal_sequential_device_only() -> None:
    r = pipelined_parity("tiny", num_requests=5, output_len=6)
    assert r.num_pipelined_steps > 0 and r.num_host_decodes > 0  # the mechanism really ran
    assert r.num_tokens_compared == 5 * 6
    assert r.same_tokens
    assert r.max_abs_logit_diff <= 1e-4


def test_profiled_tables_cover_their_grids() -> None:
    ex = TorchExecutor.from_name("tiny", num_device_blocks=4, num_host_blocks=4)
    t = profile_tables(ex, linr_x=(1, 32), pref_x=(16, 64), ctx_x=(0, 256),
                       cdec_n=(1, 4), repeats=1)
    assert t.num_layers == 2 and len(t.cdec_s) == 2 and len(t.cdec_s[0]) == 2
    assert all(v > 0 for v in (*t.linr_s, *t.pref_s, t.lnch_s))
    assert t.gdec_s[0] == 0.0  # no context, no work
    # interpolation stays within the measured range between grid points
    lo, hi = sorted(t.linr_s)
    assert lo <= t.linr(16) <= hi
