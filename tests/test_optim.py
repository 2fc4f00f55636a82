"""The LR schedule of `optimizer_step` on a real megatron optimizer: update k runs at k·peak/N
during the warm-up (the first at peak/N, not 0), then the cosine to the floor; the LR it reports
is the one the update used."""
import math

import pytest
import torch

from oreal_mega.models.hf_config import parse_arch
from oreal_mega.testing.layouts import TINY_CONFIGS

PEAK, FLOOR, WARMUP, TOTAL, EPS = 1e-3, 2e-4, 4, 10, 1e-8


def reference_lr(k: int) -> float:
    """LR of update k (1-based), float64, written independently of megatron."""
    if k <= WARMUP:
        return k * PEAK / WARMUP
    return FLOOR + (PEAK - FLOOR) * 0.5 * (1.0 + math.cos(math.pi * (k - WARMUP) / (TOTAL - WARMUP)))


@pytest.fixture
def model_and_optim(megatron_world):
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp
    from oreal_mega.trainer.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    chunks = wrap_ddp(build_model(parse_arch(TINY_CONFIGS["qwen2"]), dtype="float32"))
    cfg = OptimConfig(lr=PEAK, min_lr=FLOOR, warmup_steps=WARMUP, total_steps=TOTAL, weight_decay=0.0,
                      clip_grad=0.0, adam_eps=EPS)
    return chunks, build_optimizer(chunks, cfg, torch.float32)


def update_with_unit_grads(chunks, optim) -> tuple[dict, float]:
    """One `optimizer_step` with every gradient 1. Adam's bias-corrected moments are then 1 at every
    update, so each parameter moves by exactly −lr/(1 + eps): the step measures the LR it used."""
    from oreal_mega.models.ddp import finalize_grads, zero_grads
    from oreal_mega.trainer.optim import optimizer_step

    before = [p.detach().double().clone() for p in chunks[0].parameters()]
    zero_grads(chunks)
    for buffer in chunks[0].buffers:
        buffer.grad_data.fill_(1.0)
    finalize_grads(chunks)
    metrics = optimizer_step(optim, "x_")
    moved = torch.cat([(b - p.detach().double()).flatten() for b, p in zip(before, chunks[0].parameters())])
    assert torch.allclose(moved, moved.mean().expand_as(moved), rtol=1e-3, atol=1e-9)  # one LR for all
    return metrics, moved.mean().item() * (1 + EPS)


def test_update_k_runs_at_k_over_n_of_peak_then_cosine_to_the_floor(model_and_optim):
    chunks, optim = model_and_optim
    for k in range(1, TOTAL + 3):  # past total_steps the floor holds
        metrics, used = update_with_unit_grads(chunks, optim)
        expected = reference_lr(min(k, TOTAL))
        assert metrics["x_lr"] == pytest.approx(expected, rel=1e-12), k
        assert used == pytest.approx(expected, rel=1e-4), k
        assert metrics["x_grad_norm"] == pytest.approx(math.sqrt(sum(p.numel() for p in chunks[0].parameters())))
    assert reference_lr(1) == PEAK / WARMUP and reference_lr(TOTAL) == pytest.approx(FLOOR)


def test_frozen_steps_consume_the_warm_up(model_and_optim):
    """The trainer steps the policy's scheduler once per frozen step: after F of them the first
    update runs at LR(F + 1), as the reference code's does."""
    chunks, optim = model_and_optim
    frozen = WARMUP
    for _ in range(frozen):
        optim[1].step(1)
    metrics, used = update_with_unit_grads(chunks, optim)
    assert metrics["x_lr"] == pytest.approx(reference_lr(frozen + 1), rel=1e-12)
    assert used == pytest.approx(reference_lr(frozen + 1), rel=1e-4)
    assert reference_lr(frozen + 1) < PEAK  # just past the peak: the cosine has begun


def test_a_backward_after_an_optimizer_step_is_counted_once(model_and_optim):
    """After an fp32 megatron optimizer step `param.grad` aliases `param.main_grad`; without
    zero_grads dropping it the next backward landed in main_grad twice (autograd accumulating into the
    alias, then DDP's hook adding it). The same micro-batch must give the same gradient before and
    after a step (LR 0 keeps the weights)."""
    from oreal_mega.models.ddp import finalize_grads, zero_grads
    from oreal_mega.models.pipeline import forward_backward, pack
    from oreal_mega.trainer.optim import optimizer_step

    chunks, (optimizer, scheduler) = model_and_optim
    for group in optimizer.param_groups:
        group["lr"], group["max_lr"], group["min_lr"] = 0.0, 0.0, 0.0
    ids = torch.arange(3, 40)
    batch = pack([ids], len(ids), {"labels": [torch.roll(ids, -1)]})

    def loss_fn(hidden, model, mb):
        loss = (hidden.float() ** 2).mean()
        return loss, {"loss": loss.detach()}

    grads = []
    for _ in range(3):
        zero_grads(chunks)
        forward_backward(chunks, [batch], loss_fn)
        finalize_grads(chunks)
        grads.append(torch.cat([b.grad_data.clone() for b in chunks[0].buffers]))
        optimizer_step((optimizer, scheduler), "x_")
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[1], grads[0]) and torch.equal(grads[2], grads[0])


def test_float16_is_refused_for_want_of_loss_scaling():
    from oreal_mega.trainer.optim import OptimConfig, build_optimizer

    with pytest.raises(ValueError, match="float16 training needs loss scaling, which is not implemented; use bfloat16"):
        build_optimizer([], OptimConfig(), torch.float16)
