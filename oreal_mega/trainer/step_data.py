"""From judged rollouts to the trajectories a step trains on: rewards, advantages over all K samples
of each prompt, then the trajectory filter / pair selection (identical on every rank)."""
import torch

from oreal_mega.models.flops import model_flops
from oreal_mega.objective import (ObjectiveConfig, advantages, rewards_from_verdicts,
                                  select_trajectories)
from oreal_mega.trainer.batch import Trajectory
from oreal_mega.trainer.rollout_stage import PromptGroup


def select(groups: list[PromptGroup], cfg: ObjectiveConfig, seed: int, step: int
           ) -> tuple[list[Trajectory], dict]:
    k = len(groups[0].samples)
    rewards = rewards_from_verdicts([v for g in groups for v in g.verdicts], k, cfg)
    adv = advantages(rewards.rewards, cfg.advantage_type)
    generator = torch.Generator().manual_seed(cfg.selection_seed + seed * 7_919 + step)
    kept = select_trajectories(rewards.is_correct, cfg, generator).tolist()
    pass_rate = rewards.pass_rate
    trajectories = []
    for flat in kept:
        p, j = divmod(flat, k)
        sample = groups[p].samples[j]
        trajectories.append(Trajectory(groups[p].prompt_ids, sample.token_ids,
                                       bool(rewards.is_correct[p, j]), float(adv[p, j]),
                                       float(pass_rate[p]), sample.logprobs.tolist()))
    lengths = torch.tensor([len(s.token_ids) for g in groups for s in g.samples], dtype=torch.float32)
    kept_prompts = len({flat // k for flat in kept})
    metrics = {
        "pass_rate": rewards.is_correct.float().mean().item(),
        "reward_mean": rewards.rewards.mean().item(),
        "prompts": len(groups), "kept_prompts": kept_prompts,
        "kept_samples": len(trajectories),
        "n_pos": sum(t.is_positive for t in trajectories),
        "n_neg": sum(not t.is_positive for t in trajectories),
        "response_len_mean": lengths.mean().item(), "response_len_max": lengths.max().item(),
        "truncation_rate": rewards.verdict_counts["truncated"] / lengths.numel(),
        **{f"verdict_{name}": count for name, count in rewards.verdict_counts.items()},
    }
    return trajectories, metrics


def training_flops(arch, trajectories: list[Trajectory], with_token_rm: bool) -> float:
    """Model FLOPs of the step's training passes: policy forward+backward, reference forward
    (a third of that) and, with the token-RM, its forward+backward."""
    lengths = [t.length for t in trajectories]
    per_pass = model_flops(arch, sum(lengths), lengths)
    return per_pass * (1 + 1 / 3 + (1 if with_token_rm else 0))
