"""The rollout-engine contract shared by the trainer and `oreal-mega generate`.

A rollout engine samples completions from the current policy and receives new weights from
the trainer. Weights arrive as `(hf_name, tensor)` pairs in HuggingFace naming (the trainer's
Megatron→HF export mapping produces them), so the engine never sees Megatron layouts.

Two engines implement it: `vllm_engine.VLLMRolloutEngine` samples from a live policy, and
`replay_engine.ReplayRolloutEngine` serves the samples of a rollout dump (`samples_from_policy`
is False: there is no policy to sync or probe).
"""
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch


class RolloutEngineError(RuntimeError):
    """The rollout engine failed or is unusable; the message names the failed operation."""


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample completions. `top_k=-1` and `top_p=1.0` disable those filters.

    With a `seed`, a generate call is reproducible: the whole call draws from the engine's
    generators seeded with `seed` (no per-request seeds: they slow vLLM's GPU sampler down and fail
    on CPU), so the samples are a function of the seed and the whole batch of prompts.
    """
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        checks = {
            "n": self.n >= 1,
            "temperature": self.temperature >= 0.0,
            "top_p": 0.0 < self.top_p <= 1.0,
            "top_k": self.top_k == -1 or self.top_k >= 1,
            "max_tokens": self.max_tokens >= 1,
        }
        for key, valid in checks.items():
            if not valid:
                raise ValueError(f"SamplingConfig.{key}={getattr(self, key)!r} is out of range")


@dataclass
class Sample:
    """One completion of one prompt.

    `logprobs[j]` is the fp32 log-probability of `token_ids[j]` under the distribution the
    engine sampled from at temperature 1 before top-p/top-k filtering, i.e. the policy's
    log-probability that the trainer's importance ratios need.
    """
    prompt_index: int
    token_ids: list[int]
    text: str
    logprobs: torch.Tensor
    finish_reason: Literal["stop", "length"]


@dataclass(frozen=True)
class SyncStats:
    """What one weight synchronisation moved: bytes, buckets and wall seconds."""
    bytes: int
    buckets: int
    seconds: float
    tensors: int = 0

    @property
    def gb_per_s(self) -> float:
        return self.bytes / 1e9 / self.seconds if self.seconds > 0 else float("inf")


WAKE_TAGS = ("weights", "kv_cache")


class RolloutEngine(ABC):
    """Generation and weight updates for one policy."""

    # False for an engine that serves recorded samples: it has no weights to update or probe.
    samples_from_policy: bool = True

    @abstractmethod
    def generate(self, prompts: list[list[int]] | list[str], sampling: SamplingConfig,
                 progress: bool = False, *, step: int | None = None) -> list[list[Sample]]:
        """Sample `sampling.n` completions per prompt; result[i] holds prompt i's samples.
        String prompts are used as they are (no chat template); `progress` shows a bar.
        `step` is the training step the samples are for: the replay engine needs it, engines
        that sample from a policy ignore it (their randomness comes from `sampling.seed`)."""

    @abstractmethod
    def prompt_logprobs(self, token_ids_list: list[list[int]]) -> list[torch.Tensor]:
        """For each sequence, fp32 log p(t_j | t_<j) for j = 1..len-1 (length len-1)."""

    @abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> SyncStats:
        """Replace the policy weights with the full set of HF-named tensors given."""

    @abstractmethod
    def sleep(self) -> None:
        """Release accelerator memory (weights and KV cache) while the trainer runs."""

    @abstractmethod
    def wake(self, tags: tuple[str, ...] = WAKE_TAGS) -> None:
        """Re-acquire what `sleep` released, all of it or the parts in `tags` (of WAKE_TAGS).
        `update_weights` needs "weights" awake; `generate` and `prompt_logprobs` need both.
        A trainer wakes ("weights",), syncs, then wakes ("kv_cache",), so that the KV cache is
        allocated only once the sync's transient memory is free again."""

    @abstractmethod
    def shutdown(self) -> None:
        """Free the engine; any later call raises RolloutEngineError."""
