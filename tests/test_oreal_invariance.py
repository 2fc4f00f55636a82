"""The OREAL update (reference pass, token-RM step, fused policy loss) gives the same gradients for
any micro-batch size, data-, tensor- or pipeline-parallel layout: the loss normalisers are global."""
from pathlib import Path

import pytest
import torch

from oreal_mega.testing.launch import torchrun

WORKER = str(Path(__file__).parent / "workers" / "oreal_step.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process: micro-batches of ≤ 64 tokens (several sequences each) and of ≤ 14 (one each)."""
    out = tmp_path_factory.mktemp("single")
    torchrun(WORKER, 1, ["--max-tokens", 64, 14, "--out", out])
    return out


def _grads(directory: Path, budget: int) -> dict:
    merged = {"policy": {}, "rm": {}}
    for part in directory.glob(f"grads_{budget}_pp*.pt"):
        for model, grads in torch.load(part).items():
            merged[model].update(grads)
    return merged


def _assert_same(got: dict, expected: dict):
    for model in ("policy", "rm"):
        assert set(got[model]) == set(expected[model])
        for name, ref in expected[model].items():
            assert ref.abs().sum() > 0, (model, name)
            rel = ((got[model][name].double() - ref.double()).norm() / ref.double().norm()).item()
            assert rel <= 1e-5, (model, name, rel)


def test_micro_batch_size_and_packing(single_process):
    _assert_same(_grads(single_process, 14), _grads(single_process, 64))


@pytest.mark.parametrize("layout", [[], ["--tp", 2], ["--pp", 2]], ids=["dp2", "tp2", "pp2"])
def test_parallel_layouts(single_process, tmp_path, layout):
    torchrun(WORKER, 2, ["--max-tokens", 30, "--states", single_process / "states.pt", "--out", tmp_path, *layout])
    _assert_same(_grads(tmp_path, 30), _grads(single_process, 64))
