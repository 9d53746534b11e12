"""The training step, the recording/replay sandbox and checkpoints, in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlsyskit.training.trainmover.comm import RecordingComm, ReplayComm
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.errors import TrainMoverError
from mlsyskit.training.trainmover.runtime import (
    Runtime,
    ensure_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    train_step,
)
from mlsyskit.training.trainmover.task import MLPTask

torch.set_num_threads(1)


class SoloComm:
    """A one-rank world: every all-reduce returns its input; there is no pipeline peer."""

    def dp_all_reduce(self, tensor: torch.Tensor) -> None:
        pass

    def ctrl_all_reduce(self, tensor: torch.Tensor) -> None:
        pass

    def send(self, tensor: torch.Tensor, dst_rank: int) -> None:
        raise AssertionError("no pipeline peer in a 1-stage job")

    def recv(self, tensor: torch.Tensor, src_rank: int) -> None:
        raise AssertionError("no pipeline peer in a 1-stage job")


CONFIG = JobConfig(num_workers=1, hidden=16, layers=3, batch=4)


def build() -> Runtime:
    return Runtime.build(CONFIG, MLPTask(CONFIG), 0)


def test_replayed_shadow_iteration_reproduces_the_recorded_one() -> None:
    real = build()
    recorder = RecordingComm(SoloComm())
    loss, _ = train_step(real, recorder, 0, 0)
    assert [kind for kind, _ in recorder.records] == ["dp_all_reduce"]
    shadow = build()
    replay = ReplayComm(recorder.records)
    shadow_loss, _ = train_step(shadow, replay, 0, 0)
    assert shadow_loss == loss
    for a, b in zip(real.state_tensors(), shadow.state_tensors(), strict=True):
        assert torch.equal(a, b)


def test_replay_rejects_a_recording_of_another_shape() -> None:
    other = JobConfig(num_workers=1, hidden=8, layers=3, batch=4)
    recorder = RecordingComm(SoloComm())
    train_step(Runtime.build(other, MLPTask(other), 0), recorder, 0, 0)
    with pytest.raises(TrainMoverError, match="recording has dp_all_reduce"):
        train_step(build(), ReplayComm(recorder.records), 0, 0)
    with pytest.raises(TrainMoverError, match="no recorded output left"):
        train_step(build(), ReplayComm([]), 0, 0)


def test_state_tensors_cover_params_and_adam_state() -> None:
    rt = build()
    num_params = len(list(rt.model.parameters()))  # 3 layers: 3 weights + 3 biases
    tensors = rt.state_tensors()  # creates Adam's lazy state first
    assert num_params == 6
    assert len(tensors) == num_params * 4  # param, exp_avg, exp_avg_sq, step
    before = [p.detach().clone() for p in rt.model.parameters()]
    ensure_optimizer_state(rt.optimizer)  # already there: a no-op
    assert all(torch.equal(a, b) for a, b in zip(before, rt.model.parameters(), strict=True))


def test_pipeline_stages_split_the_full_model() -> None:
    config = JobConfig(num_workers=2, pp=2, hidden=16, layers=4, batch=4)
    task = MLPTask(config)
    full = task.build_stage(0, 1)
    first, last = task.build_stage(0, 2), task.build_stage(1, 2)
    x, _ = task.batch(0, 0, 1)
    assert torch.equal(full(x), last(first(x)))
    assert first(x).shape == task.activation_shape()


def test_data_order_depends_only_on_iteration_and_replica() -> None:
    task = MLPTask(CONFIG)
    assert torch.equal(task.batch(3, 1, 2)[0], task.batch(3, 1, 2)[0])
    assert not torch.equal(task.batch(3, 1, 2)[0], task.batch(3, 0, 2)[0])


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rt = build()
    train_step(rt, SoloComm(), 0, 0)
    save_checkpoint(rt, 1, tmp_path / "ckpt" / "stage0.pt")
    fresh = build()
    assert load_checkpoint(fresh, tmp_path / "ckpt" / "stage0.pt") == 1
    loss_a, _ = train_step(rt, SoloComm(), 1, 0)
    loss_b, _ = train_step(fresh, SoloComm(), 1, 0)
    assert loss_a == loss_b
