"""The boundary between rollout and learning: one data type each way.

A Rollout turns a step number into a `StepBatch` (the selected trajectories with everything the
learner needs) and later receives the learner's new weights as a `PolicyWeights`. The colocated
rollout (`colocated_rollout.py`: vLLM in the training processes) is one implementation; an
asynchronous or disaggregated one can replace it without touching the Learner.
"""
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from oreal_mega.trainer.batch import Trajectory


@dataclass
class StepBatch:
    step: int
    trajectories: list[Trajectory]  # after reward, advantage and selection; identical on every rank
    metrics: dict = field(default_factory=dict)  # the rollout side's statistics of the step
    rollout_tokens: int = 0  # prompt + response tokens of every sample generated (throughput)


class PolicyWeights(Protocol):
    """The learner's current policy, as a rollout engine needs it. Both calls are collective."""

    def hf_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every parameter, full (unsharded) and HF-named."""

    def logprobs(self, token_ids: list[int]) -> torch.Tensor:
        """fp32 log p(t_j | t_<j), j = 1..len-1 (the parity probe)."""


class Rollout(Protocol):
    def collect(self, step: int) -> StepBatch:
        """Collective: sample, judge and select this step's trajectories."""

    def load_weights(self, policy: PolicyWeights, step: int | None) -> dict:
        """Collective: take the new policy; returns sync (and parity, when due at `step`) metrics."""

    def maybe_evaluate(self, step: int) -> dict:
        """Collective: held-out metrics when an evaluation is due after `step`, else {}."""

    def close(self) -> None: ...
