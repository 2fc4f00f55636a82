"""A synthetic rollout dump of random tokens, to run the learner side under replay where no vLLM is.

    from oreal_mega.rollout.synthetic_dump import write_synthetic_dump
    prompts_file = write_synthetic_dump("runs/replay", steps=20, prompts=16, n=8, vocab_size=151_936,
                                        prompt_len=(64, 256), response_len=(128, 2048), seed=0)

writes `step_000000.jsonl` .. `step_000019.jsonl` in the `dump` format and `prompts.jsonl`, one
record (`question`, `gold_answer`) per dumped prompt, for the trainer's `data.prompts` (under
replay the trainer takes its prompts from the dump; the file only has to exist and parse).

One prompt group in eight is all correct, one in eight all wrong and the rest mixed (at least
one correct and one wrong sample; n=1 gives correct or wrong groups only), so the trajectory
filter keeps most prompts and drops some, as in a real run. A wrong sample is "truncated" (finish reason "length", at the longest
response length) one time in five, else "wrong" or "no_answer"; correct samples stop. Token ids
are uniform in [0, vocab_size); log-probs are fp32 draws of -Exponential(1); rewards follow the
default objective (`rewards_from_verdicts` with `ObjectiveConfig()`); texts are empty.
"""
import json
from pathlib import Path

import torch
import torch.distributed as dist

from oreal_mega.objective import ObjectiveConfig, rewards_from_verdicts
from oreal_mega.rollout.base import Sample
from oreal_mega.rollout.dump import StepGroup, write_step


def write_synthetic_dump(directory: str | Path, steps: int, prompts: int, n: int, vocab_size: int,
                         prompt_len: tuple[int, int], response_len: tuple[int, int],
                         seed: int = 0) -> Path:
    """Write `steps` step files of `prompts` groups of `n` samples; lengths are uniform in the
    inclusive ranges given. Returns the prompts file. Under torchrun only global rank 0 writes
    (the others return at once): put a barrier before reading the dump on other ranks."""
    for name, (low, high) in (("prompt_len", prompt_len), ("response_len", response_len)):
        if not 1 <= low <= high:
            raise ValueError(f"write_synthetic_dump: {name}={(low, high)} needs 1 <= low <= high")
    for name, value in (("steps", steps), ("prompts", prompts), ("n", n), ("vocab_size", vocab_size)):
        if value < 1:
            raise ValueError(f"write_synthetic_dump: {name}={value} must be at least 1")
    prompts_file = Path(directory) / "prompts.jsonl"
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return prompts_file
    generator = torch.Generator().manual_seed(seed)

    def integer(low: int, high: int) -> int:  # uniform in [low, high]
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    records = []
    for step in range(steps):
        groups = []
        for _ in range(prompts):
            kind = integer(1, 8)
            if kind <= 2 or n == 1:  # all correct, all wrong
                correct = [kind % 2 == 1] * n
            else:  # mixed: 1..n-1 correct samples at random positions
                count = integer(1, n - 1)
                correct = (torch.randperm(n, generator=generator) < count).tolist()
            verdicts, samples = [], []
            for is_correct in correct:
                truncated = not is_correct and integer(1, 5) == 1
                length = response_len[1] if truncated else integer(*response_len)
                verdicts.append("correct" if is_correct else "truncated" if truncated
                                else ("wrong", "no_answer")[integer(0, 1)])
                samples.append(Sample(
                    prompt_index=len(groups),
                    token_ids=torch.randint(0, vocab_size, (length,), generator=generator).tolist(),
                    text="",
                    logprobs=-torch.empty(length).exponential_(1.0, generator=generator),
                    finish_reason="length" if truncated else "stop"))
            rewards = rewards_from_verdicts(verdicts, n, ObjectiveConfig()).rewards[0].tolist()
            prompt_ids = torch.randint(0, vocab_size, (integer(*prompt_len),),
                                       generator=generator).tolist()
            gold = str(len(records))
            groups.append(StepGroup(prompt_ids, gold, samples, verdicts, rewards))
            records.append({"question": f"synthetic prompt {len(records)} (step {step})",
                            "gold_answer": gold})
        write_step(directory, step, groups)
    prompts_file.write_text("".join(json.dumps(record) + "\n" for record in records),
                            encoding="utf-8")
    return prompts_file

