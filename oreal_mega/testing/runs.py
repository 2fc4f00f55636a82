"""The tiny RL run that the trainer's multi-process tests share, and reading back its metrics."""
import json
from pathlib import Path

import yaml

from oreal_mega.testing.tiny import make_tiny_model_dir


def write_tiny_rl_config(root: Path, steps: int, *, keep_last: int, optim: dict | None = None) -> Path:
    """`root`/run.yaml for a tiny tied Qwen2 (2 layers) and 8 prompts it cannot solve: every rollout is
    wrong, so the run keeps all samples (no trajectory filter) and trains with REINFORCE advantages,
    exercising every pass; the token-RM is on, the actor frozen at step 0, a checkpoint after every step.
    `optim` is added to both optimizers' settings."""
    model = make_tiny_model_dir(root / "model", arch="qwen2", tie=True, seed=0)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "gold_answer": str(2 * i)}) + "\n"
                               for i in range(8)))
    optim = {"lr": 1e-4, "warmup_steps": 0, "total_steps": steps, **(optim or {})}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"path": str(model), "dtype": "float32"},
        "data": {"prompts": str(prompts), "prompts_per_step": 2, "difficulty_balance": False},
        "rollout": {"n": 4, "max_tokens": 12, "max_model_len": 128, "parity_stop_mean": 1e-4},
        "verifier": {"workers": 1, "timeout_s": 5},
        "objective": {"filter_trajectory": False, "keep_pairs": False, "advantage_type": "reinforce",
                      "actor_freeze_steps": 1},
        "optim": optim, "rm_optim": optim,
        "train": {"steps": steps, "micro_batch_tokens": 96, "save_every": 1, "keep_last": keep_last,
                  "tensorboard": False},
    }))
    return path
