"""TP / PP / VPP layouts of real megatron-core models on gloo agree with a single process."""
from pathlib import Path

import pytest
import torch

from oreal_mega.testing.launch import torchrun

WORKER = str(Path(__file__).parent / "workers" / "parity.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Single-process results per (arch, micro-batches), computed once."""
    cache = {}

    def get(arch, micro_batches):
        if (arch, micro_batches) not in cache:
            out = tmp_path_factory.mktemp(f"ref-{arch}-{micro_batches}")
            torchrun(WORKER, 1, ["--arch", arch, "--micro-batches", micro_batches, "--out", out])
            cache[arch, micro_batches] = out
        return cache[arch, micro_batches]

    return get


def _relative(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("arch, nproc, layout, micro_batches", [
    ("qwen2", 2, ["--tp", 2], 3),
    ("llama", 2, ["--tp", 2], 3),
    ("qwen2-odd-vocab", 2, ["--tp", 2], 3),
    ("qwen2", 2, ["--pp", 2], 3),
    ("qwen2-tied", 2, ["--pp", 2], 3),
    ("llama", 2, ["--pp", 2, "--vpp", 2], 2),
    ("qwen2-tied", 4, ["--tp", 2, "--pp", 2], 3),
], ids=lambda v: "x".join(map(str, v)) if isinstance(v, list) else str(v))
def test_layout_matches_single_process(reference, tmp_path, arch, nproc, layout, micro_batches):
    ref = reference(arch, micro_batches)
    torchrun(WORKER, nproc, ["--arch", arch, "--micro-batches", micro_batches,
                             "--state", ref / "state.pt", "--out", tmp_path, *layout])
    ref_logits = torch.load(ref / "logits.pt")
    assert _relative(torch.load(tmp_path / "logits.pt"), ref_logits) <= 1e-5
    ref_grads = torch.load(ref / "grads_pp0.pt")
    grads = {}
    for part in tmp_path.glob("grads_pp*.pt"):
        grads.update(torch.load(part))
    assert set(grads) == set(ref_grads)
    for name, ref_grad in ref_grads.items():
        assert ref_grad.abs().sum() > 0, name  # every parameter takes part in the loss
        assert _relative(grads[name], ref_grad) <= 1e-5, name
