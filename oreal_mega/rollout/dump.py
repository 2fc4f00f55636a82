"""Rollout dumps: what each training step sampled and how it was judged, one JSONL file per step.

`rollout.dump_dir` receives `step_000012.jsonl` for step 12, one line per prompt group, in the
step's prompt order:

    {"step": 12, "prompt_index": 0, "prompt_ids": [151644, 872, ...], "gold_answer": "7",
     "samples": [{"token_ids": [40, 1184, ...], "text": "We add ...", "logprobs": [-0.31, ...],
                  "finish_reason": "stop", "verdict": "correct", "reward": 1.0}, ...]}

`prompt_ids` are the token ids the engine was given; `gold_answer` is the prompt record's gold
answer (null when it had none); per sample, `logprobs` holds the engine's fp32 log-probability of
each token (JSON floats written from fp32 values read back to the same fp32 values), `verdict`
the verifier's status (one of `objective.rewards.VERDICTS`) and `reward` the reward the trainer
derived from it. Only global rank 0 writes, and each file appears atomically (written to a
temporary name, then renamed), so a reader never sees half a step. `read_step` parses a file back
and checks every field; `replay_engine` serves the dumped steps again.
"""
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from oreal_mega.errors import UserError
from oreal_mega.jsonl import read_objects
from oreal_mega.objective.rewards import VERDICTS
from oreal_mega.rollout.base import Sample

_STEP_FILE = re.compile(r"step_(\d+)\.jsonl")
_FINISH_REASONS = ("stop", "length")


@dataclass
class StepGroup:
    """One prompt of one step: its samples with the verifier's verdict and the reward of each."""
    prompt_ids: list[int]
    gold: str | None
    samples: list[Sample]
    verdicts: list[str]
    rewards: list[float]


def step_path(dump_dir: str | Path, step: int) -> Path:
    return Path(dump_dir) / f"step_{step:06d}.jsonl"


def dumped_steps(dump_dir: str | Path) -> list[int]:
    """The steps that have a file in `dump_dir`, ascending."""
    return sorted(int(match.group(1)) for path in Path(dump_dir).iterdir()
                  if (match := _STEP_FILE.fullmatch(path.name)))


def write_step(dump_dir: str | Path, step: int, groups: Sequence[StepGroup]) -> Path | None:
    """Write `step`'s groups to `dump_dir` (created if needed) on global rank 0 and return the
    file; other ranks write nothing and return None. Not a collective."""
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return None
    lines = []
    for index, group in enumerate(groups):
        if not len(group.samples) == len(group.verdicts) == len(group.rewards):
            raise ValueError(f"rollout dump, step {step}, prompt {index}: {len(group.samples)} "
                             f"samples, {len(group.verdicts)} verdicts, {len(group.rewards)} rewards")
        samples = [{"token_ids": list(sample.token_ids), "text": sample.text,
                    "logprobs": sample.logprobs.tolist(), "finish_reason": sample.finish_reason,
                    "verdict": verdict, "reward": float(reward)}
                   for sample, verdict, reward in zip(group.samples, group.verdicts, group.rewards)]
        lines.append(json.dumps({"step": step, "prompt_index": index,
                                 "prompt_ids": list(group.prompt_ids), "gold_answer": group.gold,
                                 "samples": samples}, ensure_ascii=False))
    path = step_path(dump_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path


def read_step(dump_dir: str | Path, step: int) -> list[StepGroup]:
    """Parse `step`'s file; a missing file or a bad field raises UserError naming the file."""
    path = step_path(dump_dir, step)
    if not path.is_file():
        present = dumped_steps(dump_dir) if Path(dump_dir).is_dir() else []
        held = f"steps {present[0]}..{present[-1]}" if present else "no step files"
        raise UserError(f"{path}: no rollout dump for step {step} ({dump_dir} holds {held})")
    groups = []
    for number, item in read_objects(path, "rollout dump"):
        where = f"{path}:{number}"
        _expect(item.get("step") == step, where, "step", item.get("step"), f"{step}")
        _expect(item.get("prompt_index") == len(groups), where, "prompt_index",
                item.get("prompt_index"), f"{len(groups)} (the line's position)")
        prompt_ids = item.get("prompt_ids")
        _expect(_is_token_list(prompt_ids) and prompt_ids, where, "prompt_ids", prompt_ids,
                "a non-empty list of token ids")
        gold = item.get("gold_answer")
        _expect(gold is None or isinstance(gold, str), where, "gold_answer", gold, "a string or null")
        raw_samples = item.get("samples")
        _expect(isinstance(raw_samples, list) and raw_samples, where, "samples", raw_samples,
                "a non-empty list")
        group = StepGroup(prompt_ids, gold, [], [], [])
        for j, raw in enumerate(raw_samples):
            sample, verdict, reward = _parse_sample(raw, where, j, len(groups))
            group.samples.append(sample)
            group.verdicts.append(verdict)
            group.rewards.append(reward)
        groups.append(group)
    if not groups:
        raise UserError(f"{path}: the rollout dump of step {step} holds no prompt groups")
    return groups


def _parse_sample(raw, where: str, j: int, prompt_index: int) -> tuple[Sample, str, float]:
    key = f"samples[{j}]"
    _expect(isinstance(raw, dict), where, key, raw, "a JSON object")
    token_ids, logprobs = raw.get("token_ids"), raw.get("logprobs")
    _expect(_is_token_list(token_ids) and token_ids, where, f"{key}.token_ids", token_ids,
            "a non-empty list of token ids")
    _expect(isinstance(logprobs, list) and len(logprobs) == len(token_ids)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in logprobs),
            where, f"{key}.logprobs", logprobs, f"{len(token_ids)} numbers (one per token)")
    text = raw.get("text")
    _expect(isinstance(text, str), where, f"{key}.text", text, "a string")
    finish_reason = raw.get("finish_reason")
    _expect(finish_reason in _FINISH_REASONS, where, f"{key}.finish_reason", finish_reason,
            " or ".join(_FINISH_REASONS))
    verdict = raw.get("verdict")
    _expect(verdict in VERDICTS, where, f"{key}.verdict", verdict, "one of " + ", ".join(VERDICTS))
    reward = raw.get("reward")
    _expect(isinstance(reward, (int, float)) and not isinstance(reward, bool), where,
            f"{key}.reward", reward, "a number")
    sample = Sample(prompt_index=prompt_index, token_ids=token_ids, text=text,
                    logprobs=torch.tensor(logprobs, dtype=torch.float32),
                    finish_reason=finish_reason)
    return sample, verdict, float(reward)


def _is_token_list(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value)


def _expect(valid, where: str, key: str, value, expected: str) -> None:
    if not valid:
        shown = json.dumps(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{where}: {key}={shown}; expected {expected}")
