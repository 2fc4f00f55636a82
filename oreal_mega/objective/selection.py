"""Which prompts and rollouts are trained on: prompt-loader difficulty balancing, the trajectory
filter and pair selection. (The kept rollouts are spread over data-parallel ranks by
`oreal_mega.packing.plan_dp_microbatches`, which places each exactly once.)"""
import math

import torch

from .config import ObjectiveConfig


def difficulty_balanced_prompts(pass_rates, buckets) -> list[int]:
    """Prompt indices, each repeated by the bucket its recorded pass rate falls in (the loader shuffles).

    Buckets are half-open (low <= p < high); a prompt in no bucket (the code's p >= 0.8) is dropped.
    """
    indices = []
    for i, rate in enumerate(pass_rates):
        if not isinstance(rate, (int, float)) or not math.isfinite(rate):
            raise ValueError(f"difficulty balancing: pass_rate of prompt {i} is {rate!r}, not a finite number")
        for low, high, repeat in buckets:
            if low <= rate < high:
                indices.extend([i] * repeat)
                break
    return indices


def select_trajectories(is_correct: torch.Tensor, cfg: ObjectiveConfig, generator: torch.Generator) -> torch.Tensor:
    """Flat (prompt-major, p·K + k) indices of the kept rollouts, ascending.

    filter_trajectory drops prompts with pass rate 0 or 1; keep_pairs then keeps one uniformly random
    correct and one uniformly random incorrect rollout of each remaining prompt.
    """
    is_correct = is_correct.cpu().bool()
    num_prompts, k = is_correct.shape
    flat = torch.arange(num_prompts * k).reshape(num_prompts, k)
    if not cfg.filter_trajectory:
        return flat.flatten()
    correct_count = is_correct.sum(dim=1)
    mixed = (correct_count > 0) & (correct_count < k)
    if not cfg.keep_pairs:
        return flat[mixed].flatten()
    # a uniform random member of a set = argmax of i.i.d. uniform scores restricted to the set
    scores = torch.rand(num_prompts, k, generator=generator)
    pick_correct = torch.where(is_correct, scores, -1.0).argmax(dim=1)
    pick_wrong = torch.where(is_correct, -1.0, scores).argmax(dim=1)
    rows = torch.nonzero(mixed).squeeze(1)
    kept = torch.stack([flat[rows, pick_correct[rows]], flat[rows, pick_wrong[rows]]], dim=1)
    return kept.flatten().sort().values
