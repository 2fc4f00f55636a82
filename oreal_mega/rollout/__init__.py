"""Rollout engines: sampling completions from the policy and receiving the trainer's weights.

`base` holds the contract (no vLLM import); `vllm_engine.VLLMRolloutEngine` implements it;
`parity` checks after a sync that the engine and the trainer compute the same policy.
"""
from oreal_mega.rollout.base import (
    RolloutEngine,
    RolloutEngineError,
    Sample,
    SamplingConfig,
    SyncStats,
)

__all__ = ["RolloutEngine", "RolloutEngineError", "Sample", "SamplingConfig", "SyncStats"]
