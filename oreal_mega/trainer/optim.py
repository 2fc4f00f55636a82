"""AdamW through megatron-core's optimizer (fp32 master weights, grad clipping, optional ZeRO-1
distributed optimizer) with linear warm-up then cosine decay to a floor.

The schedule, with N = warmup_steps, D = total_steps, peak = lr, floor = min_lr: update k (1-based)
runs at LR(k) = k·peak/N for k ≤ N, then floor + (peak − floor)·½(1 + cos(π(k − N)/(D − N))), so
the first update runs at peak/N and update D at the floor (the reference code's schedule).
megatron's scheduler returns LR(num_steps) and starts at num_steps = 0 (LR 0), so
`optimizer_step` advances it *before* the update; its num_steps (saved in checkpoints) is then
the number of schedule steps taken, the current update's included.

The trainer advances the policy's scheduler once per frozen step (`scheduler.step(1)` while only
the token-RM trains), as the reference code does: the warm-up runs during the freeze and the
policy's first update, at step F = actor_freeze_steps, runs at LR(F + 1), just past the peak
when F = N.
"""
from dataclasses import dataclass

import torch

from oreal_mega.errors import UserError


@dataclass
class OptimConfig:
    lr: float = 5e-7
    min_lr: float = 1e-7  # cosine floor (the paper: 1/5 of peak)
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    warmup_steps: int = 10
    total_steps: int = 0  # length of the LR schedule; 0: the run's steps (train.steps, or SFT's step count)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    distributed_optimizer: bool = False  # shard optimizer states over DP (ZeRO-1)


def build_optimizer(chunks: list[torch.nn.Module], cfg: OptimConfig, dtype: torch.dtype):
    """Optimizer and LR scheduler for DDP-wrapped `chunks` (float32 or bfloat16: float16 would need loss
    scaling, and the fused LM-head loss adds its weight gradient to main_grad outside autograd, unscaled)."""
    if dtype == torch.float16:  # model.dtype refuses it; this is for callers that build models themselves
        raise ValueError("float16 training needs loss scaling, which is not implemented; use bfloat16")
    from megatron.core import parallel_state  # (not at import: configs hold OptimConfig)
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    if (cfg.distributed_optimizer and torch.distributed.get_backend() == "gloo"
            and parallel_state.get_data_parallel_world_size() > 1):
        # Measured: gradient norms come out as one rank's share instead of the DP sum.
        raise UserError("optim.distributed_optimizer=true with data parallelism is not supported on gloo "
                        "(CPU): megatron's reduce-scatter does not sum gradients there")
    config = OptimizerConfig(
        optimizer="adam", lr=cfg.lr, min_lr=cfg.min_lr, weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, adam_eps=cfg.adam_eps,
        clip_grad=cfg.clip_grad, bf16=dtype == torch.bfloat16, fp16=False,
        params_dtype=dtype, use_distributed_optimizer=cfg.distributed_optimizer,
    )
    optimizer = get_megatron_optimizer(config, chunks)
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=cfg.lr, min_lr=cfg.min_lr,
        lr_warmup_steps=cfg.warmup_steps, lr_decay_steps=max(cfg.total_steps, cfg.warmup_steps + 1),
        lr_decay_style="cosine", start_wd=cfg.weight_decay, end_wd=cfg.weight_decay,
        wd_incr_steps=cfg.total_steps, wd_incr_style="constant",
    )
    return optimizer, scheduler


def optimizer_step(optim: tuple, prefix: str) -> dict:
    """Advance the schedule, then one optimizer update at its LR; returns the grad norm (before
    clipping) and the lr the update used."""
    optimizer, scheduler = optim
    scheduler.step(1)
    lr = optimizer.param_groups[0]["lr"]
    _, grad_norm, _ = optimizer.step()
    return {f"{prefix}grad_norm": float(grad_norm or 0.0), f"{prefix}lr": lr}
