"""A rollout engine that replays a rollout dump (`rollout.engine: replay`, `rollout.replay_dir`).

It needs no vLLM and no policy: for step s it returns exactly the samples dumped for step s (see
`dump` for the format), so the learner side of a run — rewards, selection, reference and policy
passes, token-RM, optimiser, checkpoints — runs on a machine without vLLM and, given the same
config and initial weights, reproduces the dumped run's learner metrics exactly.

The contract with the trainer under replay:
- the dump is the source of truth for the prompts: each step, take them from
  `prompts_for_step(step)` (token ids and gold answers) instead of the prompt schedule;
- `generate(prompt_ids, sampling, step=step)` returns the dumped samples (fp32 log-probs, finish
  reasons). It raises UserError naming the file when the prompts differ from the dumped ones,
  when `sampling.n` differs from the dumped group size, or when the step has no file;
- `verdicts_for_step(step)` returns the dumped verifier statuses, used instead of running the
  verifier; every rank reads the dump itself (the directory must be visible to all ranks);
- `samples_from_policy` is False: skip the weight sync and the parity probe (and evaluation).
  `update_weights` consumes nothing from its stream and returns zero SyncStats;
  `prompt_logprobs` raises, as there is no policy to score with; sleep/wake do nothing.

`synthetic_dump.write_synthetic_dump` writes a dump of random tokens in this format, together with
a prompts file for the trainer's `data.prompts`.
"""
from collections.abc import Iterable
from pathlib import Path

import torch

from oreal_mega.errors import UserError
from oreal_mega.rollout.base import (
    WAKE_TAGS,
    RolloutEngine,
    RolloutEngineError,
    Sample,
    SamplingConfig,
    SyncStats,
)
from oreal_mega.rollout.dump import StepGroup, dumped_steps, read_step, step_path


class ReplayRolloutEngine(RolloutEngine):
    """Serves the dumped samples of `replay_dir`, one step file at a time."""

    samples_from_policy = False

    def __init__(self, replay_dir: str | Path):
        self.replay_dir = Path(replay_dir)
        if not self.replay_dir.is_dir():
            raise UserError(f"rollout.replay_dir={replay_dir}: no such directory")
        if not dumped_steps(self.replay_dir):
            raise UserError(f"rollout.replay_dir={replay_dir}: holds no step_*.jsonl rollout dump")
        self._loaded: tuple[int, list[StepGroup]] | None = None
        self._shut_down = False

    def _check_open(self, operation: str) -> None:
        if self._shut_down:
            raise RolloutEngineError(f"cannot {operation}: the replay engine was shut down")

    def _groups(self, step: int, operation: str) -> list[StepGroup]:
        self._check_open(operation)
        if self._loaded is None or self._loaded[0] != step:
            self._loaded = (step, read_step(self.replay_dir, step))
        return self._loaded[1]

    def prompts_for_step(self, step: int) -> tuple[list[list[int]], list[str | None]]:
        """The dumped prompts of `step`: token ids and gold answers, in the dump's order."""
        groups = self._groups(step, "read the prompts")
        return [list(g.prompt_ids) for g in groups], [g.gold for g in groups]

    def verdicts_for_step(self, step: int) -> list[list[str]]:
        """The dumped verifier status of every sample of `step`, per prompt."""
        return [list(g.verdicts) for g in self._groups(step, "read the verdicts")]

    def generate(self, prompts: list[list[int]] | list[str], sampling: SamplingConfig,
                 progress: bool = False, *, step: int | None = None) -> list[list[Sample]]:
        if step is None:
            raise RolloutEngineError("the replay engine serves dumped steps: call "
                                     "generate(prompts, sampling, step=STEP)")
        groups = self._groups(step, "generate")
        path = step_path(self.replay_dir, step)
        if len(prompts) != len(groups):
            raise UserError(f"{path}: step {step} was dumped with {len(groups)} prompts; "
                            f"{len(prompts)} were asked for")
        for index, (prompt, group) in enumerate(zip(prompts, groups)):
            if isinstance(prompt, str):
                raise UserError(f"{path}: step {step}, prompt {index}: the replay engine compares "
                                "token ids; it was given text")
            asked, dumped = list(prompt), group.prompt_ids
            if asked != dumped:
                first = next((j for j, (a, d) in enumerate(zip(asked, dumped)) if a != d),
                             min(len(asked), len(dumped)))
                raise UserError(f"{path}: step {step}, prompt {index}: the prompt asked for "
                                f"({len(asked)} tokens) differs from the dumped prompt_ids "
                                f"({len(dumped)} tokens) from token {first} on")
            if len(group.samples) != sampling.n:
                raise UserError(f"{path}: step {step}, prompt {index} has {len(group.samples)} "
                                f"dumped samples; sampling asks for n={sampling.n}")
        return [[Sample(s.prompt_index, list(s.token_ids), s.text, s.logprobs.clone(),
                        s.finish_reason) for s in group.samples] for group in groups]

    def prompt_logprobs(self, token_ids_list: list[list[int]]) -> list[torch.Tensor]:
        raise RolloutEngineError("the replay engine has no policy to compute prompt log-probs "
                                 "with (samples_from_policy is False: skip the parity probe)")

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> SyncStats:
        """Nothing to update: the stream is not consumed (no collective of the producer runs)."""
        self._check_open("update weights")
        return SyncStats(bytes=0, buckets=0, seconds=0.0, tensors=0)

    def sleep(self) -> None:
        self._check_open("sleep")

    def wake(self, tags: tuple[str, ...] = WAKE_TAGS) -> None:
        self._check_open("wake")

    def shutdown(self) -> None:
        self._shut_down = True
        self._loaded = None

