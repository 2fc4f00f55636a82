"""Outcome rewards from verifier verdicts, and per-prompt advantages over all K rollouts (before filtering)."""
from collections import Counter
from dataclasses import dataclass

import torch

from .config import ObjectiveConfig

VERDICTS = ("correct", "wrong", "no_answer", "truncated", "timeout", "error")


@dataclass(frozen=True)
class Rewards:
    rewards: torch.Tensor  # [P, K] fp32 reward r
    is_correct: torch.Tensor  # [P, K] bool, verdict == 'correct'
    verdict_counts: dict  # verdict -> number of rollouts, every name in VERDICTS present

    @property
    def pass_rate(self) -> torch.Tensor:
        """p = c/K per prompt, [P] fp32."""
        return self.is_correct.float().mean(dim=1)


def rewards_from_verdicts(verdicts: list[str], num_samples_per_prompt: int, cfg: ObjectiveConfig) -> Rewards:
    """Map a flat prompt-major list of P·K verdicts to rewards; every non-'correct' verdict is wrong.

    Truncated, timed-out and unverifiable rollouts count as wrong (the reference code maps a failed
    verifier to −1 and a missing stop token to incorrect); their counts are returned for metrics.
    """
    k = num_samples_per_prompt
    if k < 1 or len(verdicts) % k:
        raise ValueError(f"rewards: {len(verdicts)} verdicts is not a multiple of K = {k}")
    for i, verdict in enumerate(verdicts):
        if verdict not in VERDICTS:
            raise ValueError(f"rewards: verdict[{i}] = {verdict!r} is not one of {', '.join(VERDICTS)}")
    is_correct = torch.tensor([v == "correct" for v in verdicts], dtype=torch.bool).reshape(-1, k)
    rewards = torch.where(is_correct, cfg.reward_correct, cfg.reward_wrong).float()
    counts = Counter(verdicts)
    return Rewards(rewards, is_correct, {name: counts.get(name, 0) for name in VERDICTS})


def advantages(rewards: torch.Tensor, advantage_type: str) -> torch.Tensor:
    """Advantages [P, K] from rewards [P, K], each prompt's row over all its K rollouts."""
    rewards = rewards.float()
    k = rewards.shape[1]
    if advantage_type == "reinforce":
        return rewards.clone()
    if k < 2:
        raise ValueError(f"advantages: '{advantage_type}' needs K >= 2 rollouts per prompt, got {k}")
    if advantage_type == "rloo":
        leave_one_out_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
        return rewards - leave_one_out_mean
    if advantage_type == "grpo":
        centred = rewards - rewards.mean(dim=1, keepdim=True)
        return centred / (rewards.std(dim=1, keepdim=True) + 1e-8)
    raise ValueError(f"advantages: unknown advantage_type {advantage_type!r}")
