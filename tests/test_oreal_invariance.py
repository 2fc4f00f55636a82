"""The OREAL update (reference pass, token-RM step, fused policy loss) gives the same gradients for
any micro-batch size, data-, tensor- or pipeline-parallel layout: the loss normalisers are global."""
from pathlib import Path

import pytest
import torch

from oreal_mega.testing.launch import torchrun

WORKER = str(Path(__file__).parent / "workers" / "oreal_step.py")
pytestmark = pytest.mark.slow


ARCHS = ["qwen2", "qwen2-tied"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process: micro-batches of ≤ 64 tokens (several sequences each) and of ≤ 14 (one each); and
    the steps that keep only the first 1 or 3 trajectories."""
    out = tmp_path_factory.mktemp("single")
    torchrun(WORKER, 1, ["--archs", *ARCHS, "--max-tokens", 64, 14, "--kept-first", "1:64", "3:64", "--out", out])
    return out


def _grads(directory: Path, arch: str, label: int | str) -> dict:
    merged = {"policy": {}, "rm": {}}
    for part in directory.glob(f"grads_{arch}_{label}_pp*.pt"):
        for model, grads in torch.load(part).items():
            merged[model].update(grads)
    assert merged["policy"], f"no gradients of {arch} {label} in {directory}"
    return merged


def _assert_same(got: dict, expected: dict):
    for model in ("policy", "rm"):
        assert set(got[model]) == set(expected[model])
        for name, ref in expected[model].items():
            assert ref.abs().sum() > 0, (model, name)
            rel = ((got[model][name].double() - ref.double()).norm() / ref.double().norm()).item()
            assert rel <= 1e-5, (model, name, rel)


@pytest.mark.parametrize("arch", ARCHS)
def test_micro_batch_size_and_packing(single_process, arch):
    _assert_same(_grads(single_process, arch, 14), _grads(single_process, arch, 64))


@pytest.mark.parametrize("layout", [["--overlap-grad-reduce"], ["--tp", 2], ["--pp", 2, "--overlap-grad-reduce"]],
                         ids=["dp2-overlap", "tp2", "pp2-overlap"])
def test_parallel_layouts(single_process, tmp_path, layout):
    """With the DP reduction overlapped with the backward (forced on: gloo's default is off), in several
    buckets, for an untied and a tied LM head, whose gradient the fused loss writes straight into
    main_grad; two updates per run, so that the second runs megatron's steady-state overlap (the
    first reduces at finish_grad_sync), with different micro-batch counts. The overlapped runs then
    update on steps that keep fewer trajectories: at DP = 2 one kept trajectory leaves rank 1 a single
    all-padding micro-batch, three in micro-batches of ≤ 16 tokens give it one real and one empty
    micro-batch (plans [[[0]], [[]]] and [[[1], [0]], [[2], []]]); both must still match one process."""
    overlap = "--overlap-grad-reduce" in layout
    archs, budgets, kept_first = (ARCHS, [30, 16], {1: 30, 3: 16}) if overlap else (ARCHS[:1], [30], {})
    torchrun(WORKER, 2, ["--archs", *archs, "--max-tokens", *budgets, "--states", single_process, "--out", tmp_path,
                         "--kept-first", *[f"{kept}:{budget}" for kept, budget in kept_first.items()], *layout])
    for arch in archs:
        for budget in budgets:
            _assert_same(_grads(tmp_path, arch, budget), _grads(single_process, arch, 64))
        for kept, budget in kept_first.items():
            _assert_same(_grads(tmp_path, arch, f"first{kept}_{budget}"),
                         _grads(single_process, arch, f"first{kept}_64"))
