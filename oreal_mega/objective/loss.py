"""The OREAL actor loss as per-token coefficients for the fused LM-head kernel, plus an autograd reference.

The fused kernel computes, over the tokens of a micro-batch,
    loss = Σ_t [ coef_logp_t · ℓ_t + kl_coef_t · KL(ℓ_t, ℓ^ref_t) ]
with KL from `oreal_mega.kernels.kl_value` (k3 / k1 / mse). Coefficients are divided by the step's global counts (N+, N−, N), so summing
the micro-batch losses over micro-batches and data-parallel ranks gives the step's loss whatever the
micro-batch size, packing or DP size. The trainer must therefore SUM gradients over DP ranks (or
multiply the loss by dp_size when its data-parallel reduction averages).

Code mode (train_oreal.py), for response token t of rollout y with advantage A and weight ω:
  (a) positive y:  coef = −λ+ · A · ω+ / N+         (A only with pos_mult_adv; BC on −ℓ)
  (b) negative y:  coef = η · (−A) · ω− / N−        (the code's −A·exp(ℓ − sg ℓ): its gradient is −A·∇ℓ)
  (c) every token: kl_coef = β / N
With policy_normalizer 'joint', N+ and N− in (a) and (b) are both replaced by N (token-mean baselines).
Paper mode: (a) without A, (b) with (1 − p) in place of −A; (c) the same.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist

from oreal_mega.kernels import kl_value

from .config import ObjectiveConfig
from .packed import PackedResponses


@dataclass(frozen=True)
class GlobalCounts:
    positive_tokens: int  # N+: response tokens of kept positive rollouts, whole step
    negative_tokens: int  # N−: response tokens of kept negative rollouts, whole step
    sequences: int  # M: kept rollouts, whole step

    @property
    def tokens(self) -> int:
        """N = N+ + N−."""
        return self.positive_tokens + self.negative_tokens


@dataclass(frozen=True)
class ActorLossTerms:
    total: torch.Tensor
    bc: torch.Tensor  # term (a), positive behaviour cloning
    neg: torch.Tensor  # term (b), negative policy gradient
    kl: torch.Tensor  # term (c), β·KL to the reference


def global_counts(response_lengths: torch.Tensor, is_positive: torch.Tensor, group=None) -> GlobalCounts:
    """Counts over this rank's kept rollouts for the whole step (all its micro-batches), summed over
    `group` (the data-parallel group) when given. Call once per step, before micro-batching.
    With NCCL the inputs must be on the current CUDA device."""
    lengths = response_lengths.long()
    positive = is_positive.bool()
    local = torch.stack([lengths[positive].sum(), lengths[~positive].sum(),
                         torch.tensor(lengths.numel(), device=lengths.device)])
    if group is not None:
        dist.all_reduce(local, op=dist.ReduceOp.SUM, group=group)
    pos, neg, seqs = local.tolist()
    return GlobalCounts(positive_tokens=pos, negative_tokens=neg, sequences=seqs)


def _policy_normalizers(counts: GlobalCounts, cfg: ObjectiveConfig) -> tuple[int, int]:
    """Divisors of terms (a) and (b): (N+, N−) when split, (N, N) when joint; at least 1."""
    if cfg.policy_normalizer == "joint":
        return max(counts.tokens, 1), max(counts.tokens, 1)
    return max(counts.positive_tokens, 1), max(counts.negative_tokens, 1)


def _sequence_policy_coefficients(batch: PackedResponses, counts: GlobalCounts, cfg: ObjectiveConfig) -> torch.Tensor:
    """[S] multiplier of ω_t·ℓ_t for each rollout: terms (a) and (b) without the token weight."""
    advantage = batch.advantage.float()
    pos_scale = advantage if cfg.positive_times_advantage else torch.ones_like(advantage)
    positive_tokens, negative_tokens = _policy_normalizers(counts, cfg)
    positive = -cfg.positive_loss_factor * pos_scale / positive_tokens
    neg_scale = -advantage if cfg.mode == "code" else 1.0 - batch.pass_rate.float()
    negative = cfg.negative_loss_factor * neg_scale / negative_tokens
    return torch.where(batch.is_positive, positive, negative)


def actor_token_coefficients(batch: PackedResponses, token_weight: torch.Tensor, counts: GlobalCounts,
                             cfg: ObjectiveConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(coef_logp [T], kl_coef [T]) fp32 for the fused kernel; zero off-response.

    token_weight is ω from token_weights.token_weights (ω+ on positives, ω− on negatives).
    """
    mask = batch.response_mask
    coef_logp = batch.per_token(_sequence_policy_coefficients(batch, counts, cfg)) * token_weight.float()
    coef_logp = torch.where(mask, coef_logp, 0.0)
    kl_coef = torch.where(mask, cfg.kl_coef / max(counts.tokens, 1), 0.0).float()
    return coef_logp, kl_coef


def actor_loss_reference(logp: torch.Tensor, ref_logp: torch.Tensor, batch: PackedResponses,
                         token_weight: torch.Tensor, counts: GlobalCounts, cfg: ObjectiveConfig) -> ActorLossTerms:
    """The actor loss of one micro-batch written term by term with autograd (CPU path and tests).

    Values follow the reference code: term (b) is −η·Σ A·ω−·exp(ℓ − sg ℓ)/N−, whose value is
    η·Σ|A|·ω−/N− (not Σ coef·ℓ); term (a) is Σ λ+·A·ω+·(−ℓ)/N+.
    """
    mask = batch.response_mask
    positive_token = mask & batch.per_token(batch.is_positive)
    negative_token = mask & ~batch.per_token(batch.is_positive)
    logp = logp.float()
    omega = token_weight.float()
    advantage = batch.per_token(batch.advantage.float())

    positive_tokens, negative_tokens = _policy_normalizers(counts, cfg)
    pos_adv = advantage if cfg.positive_times_advantage else torch.ones_like(advantage)
    pos_w = cfg.positive_loss_factor * pos_adv * omega / positive_tokens
    if cfg.mode == "code":
        neg_adv = advantage
    else:
        neg_adv = -(1.0 - batch.per_token(batch.pass_rate.float()))
    neg_w = cfg.negative_loss_factor * neg_adv * omega / negative_tokens

    bc = (pos_w * -logp)[positive_token].sum()
    neg = -(torch.exp(logp - logp.detach()) * neg_w)[negative_token].sum()
    kl = cfg.kl_coef * kl_value(logp, ref_logp.float(), cfg.kl_type)[mask].sum() / max(counts.tokens, 1)
    return ActorLossTerms(total=bc + neg + kl, bc=bc, neg=neg, kl=kl)
