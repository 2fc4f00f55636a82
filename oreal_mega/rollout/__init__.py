"""Rollout engines: sampling completions from the policy and receiving the trainer's weights.

`base` holds the contract; `vllm_engine.VLLMRolloutEngine` implements it on vLLM (the only
module that imports vLLM, when an engine is built) and `replay_engine.ReplayRolloutEngine`
serves the samples of a rollout dump (`dump`: the per-step JSONL format, its writer and reader;
`synthetic_dump`: random dumps for learner-only runs); `parity` checks after a sync that the
engine and the trainer compute the same policy.
"""
from oreal_mega.rollout.base import (
    RolloutEngine,
    RolloutEngineError,
    Sample,
    SamplingConfig,
    SyncStats,
)

__all__ = ["RolloutEngine", "RolloutEngineError", "Sample", "SamplingConfig", "SyncStats"]
