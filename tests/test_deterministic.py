"""`train.deterministic`: what `make_deterministic` sets, and that it leaves the CPU numerics of our own
reductions (the objective's `segment_sum`) as they are: in-order sums, close to float64."""
import math
import os

import pytest
import torch

from oreal_mega.distributed import make_deterministic
from oreal_mega.objective.packed import segment_sum
from oreal_mega.trainer.config import TrainLoopConfig


@pytest.fixture
def deterministic_mode():
    """Torch's deterministic algorithms on for the test, and off again after it."""
    yield
    torch.use_deterministic_algorithms(False)


def test_make_deterministic_sets_cublas_nccl_and_torch_keeping_the_users_nccl_choice(monkeypatch,
                                                                                      deterministic_mode):
    assert TrainLoopConfig().deterministic is False
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")  # not one cuBLAS is reproducible with: replaced
    monkeypatch.delenv("NCCL_ALGO", raising=False)
    make_deterministic()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and os.environ["NCCL_ALGO"] == "Ring"
    monkeypatch.setenv("NCCL_ALGO", "Tree")
    make_deterministic()
    assert os.environ["NCCL_ALGO"] == "Tree"


def test_segment_sum_on_cpu_is_the_in_order_sum_with_or_without_deterministic_mode(deterministic_mode):
    generator = torch.Generator().manual_seed(0)
    lengths = [5, 1, 300, 17, 2]
    ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    # magnitudes from 1e-3 to 1e3, so that the order of the additions shows in the rounding
    values = torch.randn(len(ids), generator=generator) * 10.0 ** torch.randint(-3, 4, (len(ids),),
                                                                                generator=generator)
    default = segment_sum(values, ids, len(lengths))
    in_order = torch.zeros(len(lengths))
    for value, sequence in zip(values, ids):
        in_order[sequence] += value
    assert torch.equal(default, in_order)
    exact = [math.fsum(values[ids == s].double().tolist()) for s in range(len(lengths))]
    scale = [math.fsum(values[ids == s].double().abs().tolist()) for s in range(len(lengths))]
    assert all(abs(got - want) <= 1e-6 * size for got, want, size in zip(default.tolist(), exact, scale))
    torch.use_deterministic_algorithms(True)
    assert torch.equal(segment_sum(values, ids, len(lengths)), default)
    values.requires_grad_(True)
    weights = torch.arange(1.0, len(lengths) + 1)
    (segment_sum(values, ids, len(lengths)) * weights).sum().backward()
    assert torch.equal(values.grad, weights[ids])
