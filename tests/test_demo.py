"""README command 1's pipeline, shortened: data → SFT → eval → OREAL RL (2 processes) → eval → plot."""
import json
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
