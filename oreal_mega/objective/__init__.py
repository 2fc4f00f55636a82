"""The OREAL objective (model-independent part): rewards, advantages, trajectory selection, TRM token
weights and loss, and the actor loss as per-token coefficients for the fused LM-head kernel."""
from .config import ObjectiveConfig
from .loss import ActorLossTerms, GlobalCounts, actor_loss_reference, actor_token_coefficients, global_counts
from .packed import PackedResponses
from .rewards import Rewards, advantages, rewards_from_verdicts
from .selection import difficulty_balanced_prompts, select_trajectories
from .token_weights import token_weights, trm_loss

__all__ = [
    "ObjectiveConfig", "PackedResponses", "Rewards", "GlobalCounts", "ActorLossTerms",
    "rewards_from_verdicts", "advantages", "difficulty_balanced_prompts", "select_trajectories",
    "token_weights", "trm_loss", "global_counts",
    "actor_token_coefficients", "actor_loss_reference",
]
