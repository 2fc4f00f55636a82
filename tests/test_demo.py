"""README command 1's pipeline, shortened: data → SFT → eval → OREAL RL (2 processes) → eval → plot."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_short_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "oreal_mega", "demo", "--out", str(out), "--sft-examples", "256",
                           "--rl-steps", "2", "--eval-problems", "16"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for path in ("learning.png", "RESULTS.md", "sft/hf/config.json", "rl/hf/step_000002/model.safetensors.index.json",
                 "eval_sft/summary.json", "eval_rl/summary.json", "rl/metrics.jsonl"):
        assert (out / path).is_file(), path
    steps = [json.loads(line)["step"] for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]
    summary = json.loads((out / "eval_rl" / "summary.json").read_text())
    assert summary["problems"] == 16
    assert f"plot {out / 'learning.png'}" in proc.stdout
    machine = (out / "RESULTS.md").read_text().splitlines()[-1]  # numbers vary across CPU models
    assert machine.startswith("machine: ") and f" {os.cpu_count()} CPUs; Python " in machine
    assert "torch 2." in machine and "megatron-core 0." in machine and "transformers 5." in machine


def test_rl_objective_section_is_replaced_not_merged(tmp_path, monkeypatch):
    """An ablation variant's objective replaces the demo's whole objective section: keys it leaves out
    take the objective's defaults (e.g. the token-RM on), not the demo's values."""
    import argparse

    import yaml

    from oreal_mega import demo

    monkeypatch.setattr(demo, "stage", lambda title, cmd, log: 0.0)
    args = argparse.Namespace(rl_steps=8, nproc=2, seed=0)
    demo.train_rl(tmp_path / "variant", tmp_path / "model", tmp_path / "data", args, tmp_path / "log",
                  objective={"actor_freeze_steps": 3})
    assert yaml.safe_load((tmp_path / "variant.yaml").read_text())["objective"] == {"actor_freeze_steps": 3}
    demo.train_rl(tmp_path / "demo", tmp_path / "model", tmp_path / "data", args, tmp_path / "log")
    written = yaml.safe_load((tmp_path / "demo.yaml").read_text())
    assert written["objective"] == demo.RL["objective"] and written["train"]["steps"] == 8
