"""Exact resume in the model-parallel layouts and with ZeRO-1: a run restarted from its step-1
checkpoint computes steps 2 and 3 exactly as the uninterrupted run did — rollouts, verdicts, losses
and the gradient norms of the policy and the token-RM (clipping off, so a wrong gradient cannot hide
behind the clip) — and logs every step once. DP = 2 is the layout of tests/test_faults.py, where
every restart is checked the same way."""
import json
import shutil
from pathlib import Path

import pytest

from oreal_mega.testing.launch import torchrun
from oreal_mega.testing.runs import write_tiny_rl_config

pytestmark = pytest.mark.slow

STEPS, RESUME_AT = 4, 2
COMPARED = ["pass_rate", "kept_samples", "response_len_mean", "loss", "kl", "entropy", "policy_grad_norm",
            "trm_loss", "trm_grad_norm", "parity_max_abs"]
LAYOUTS = {  # name: (processes, overrides)
    "tp2": (2, ["parallel.tp=2"]),
    "pp2": (2, ["parallel.pp=2"]),
    "zero1": (1, ["optim.distributed_optimizer=true", "rm_optim.distributed_optimizer=true"]),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A tiny tied Qwen2 (2 layers: PP=2 splits them), prompts it cannot solve (every sample is
    kept), the token-RM on, the actor frozen at step 0 only, and every checkpoint kept."""
    return write_tiny_rl_config(tmp_path_factory.mktemp("resume"), STEPS, keep_last=0, optim={"clip_grad": 1e9})


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_restart_from_a_checkpoint_equals_the_uninterrupted_run(config, tmp_path, layout):
    """The restarted run gets the uninterrupted run's directory as a stop after step 1 would have
    left it: checkpoints up to step_000001, and a metrics.jsonl whose later steps must be dropped."""
    processes, overrides = LAYOUTS[layout]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    torchrun("-m oreal_mega train", processes, [config, f"train.out_dir={full}", *overrides])
    shutil.copytree(full, resumed)
    for checkpoint in (resumed / "checkpoints").iterdir():
        if checkpoint.name > f"step_{RESUME_AT - 1:06d}":
            shutil.rmtree(checkpoint)

    output = torchrun("-m oreal_mega train", processes, [config, f"train.out_dir={resumed}", *overrides])
    assert f"resumed from {resumed / 'checkpoints' / f'step_{RESUME_AT - 1:06d}'} at step {RESUME_AT}" in output
    records, expected = _records(resumed), _records(full)
    assert [r["step"] for r in records] == list(range(STEPS))
    for step in range(RESUME_AT, STEPS):
        for key in COMPARED:
            assert key in expected[step], (step, key)
            assert records[step][key] == expected[step][key], (step, key, records[step][key], expected[step][key])
