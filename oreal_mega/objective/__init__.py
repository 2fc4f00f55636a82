"""The OREAL objective (model-independent part): rewards, advantages, trajectory selection, TRM token
weights and loss, and the actor loss as per-token coefficients for the fused LM-head kernel."""
from .config import ObjectiveConfig
from .loss import ActorLossTerms, GlobalCounts, actor_loss_reference, actor_token_coefficients, global_counts
from .packed import PackedResponses
from .rewards import Rewards, advantages, rewards_from_verdicts
from .selection import difficulty_balanced_prompts, select_trajectories
from .rm_diagnostics import error_localisation, pair_accuracy
from .token_weights import (correctness_probability, reference_logprob_feature, sequence_mean_logit, token_weights,
                            trm_loss)

__all__ = [
    "ObjectiveConfig", "PackedResponses", "Rewards", "GlobalCounts", "ActorLossTerms",
    "rewards_from_verdicts", "advantages", "difficulty_balanced_prompts", "select_trajectories",
    "token_weights", "trm_loss", "correctness_probability", "reference_logprob_feature", "sequence_mean_logit",
    "global_counts",
    "error_localisation", "pair_accuracy",
    "actor_token_coefficients", "actor_loss_reference",
]
