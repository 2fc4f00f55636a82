"""README command 1's pipeline, shortened: data → SFT → eval → OREAL RL (2 processes) → eval → plot; and
how a stage's output reaches its log and the terminal."""
import io
import json
import os
import subprocess
import sys

import pytest

from oreal_mega import demo


@pytest.mark.slow
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

    monkeypatch.setattr(demo, "stage", lambda title, cmd, log: 0.0)
    args = argparse.Namespace(rl_steps=8, nproc=2, seed=0)
    demo.train_rl(tmp_path / "variant", tmp_path / "model", tmp_path / "data", args, tmp_path / "log",
                  objective={"actor_freeze_steps": 3})
    assert yaml.safe_load((tmp_path / "variant.yaml").read_text())["objective"] == {"actor_freeze_steps": 3}
    demo.train_rl(tmp_path / "demo", tmp_path / "model", tmp_path / "data", args, tmp_path / "log")
    written = yaml.safe_load((tmp_path / "demo.yaml").read_text())
    assert written["objective"] == demo.RL["objective"] and written["train"]["steps"] == 8


class Terminal(io.StringIO):
    """What the demo writes to the terminal; the first progress line it gets creates `seen`."""

    def __init__(self, tty: bool, seen):
        super().__init__()
        self.tty, self.seen = tty, seen

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        if "step 1/2" in text:
            self.seen.touch()
        return super().write(text)


# A stage's output: other lines, a progress bar redrawn with \r, progress lines, stderr; the first progress line
# must be on the terminal while the stage still runs (the child waits for it), and the stage exits 3.
STAGE = """import os, sys, time
print("loading the model", flush=True)
sys.stdout.write("bar 10%\\rbar 100%\\n")
print("step 1/2 0.5s (ETA 0.0 min) loss 1.0000 pass_rate 0.25", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("step 2/2 0.4s (ETA 0.0 min) loss 0.5" if os.path.exists(sys.argv[1]) else "not streamed", flush=True)
print("warning on stderr", file=sys.stderr, flush=True)
raise SystemExit(3)
"""


@pytest.mark.parametrize("tty", [False, True])
def test_a_stage_streams_its_progress_to_the_terminal_and_all_its_output_to_the_log(tmp_path, monkeypatch, tty):
    monkeypatch.setenv("COLUMNS", "40")  # shutil.get_terminal_size's answer
    terminal, log = Terminal(tty, tmp_path / "seen"), tmp_path / "stage.log"
    assert demo.run_logged([sys.executable, "-c", STAGE, str(tmp_path / "seen")], log, terminal) == 3
    first, second = "step 1/2 0.5s (ETA 0.0 min) loss 1.0000 pass_rate 0.25", "step 2/2 0.4s (ETA 0.0 min) loss 0.5"
    assert log.read_bytes() == f"loading the model\nbar 10%\rbar 100%\n{first}\n{second}\nwarning on stderr\n".encode()
    if tty:  # one line rewritten in place, cut to the width of 40 - 1
        assert terminal.getvalue() == "\r" + f"   {first}"[:39] + "\r" + f"   {second}".ljust(39) + "\n"
    else:
        assert terminal.getvalue() == f"   {first}\n   {second}\n"


def test_without_a_tty_progress_lines_are_thinned_to_one_per_interval_and_the_last(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "LOG_EVERY_S", 3600.0)
    lines = "".join(f"print('step {k}/50 0.1s (ETA 0.0 min) loss 1', flush=True)\n" for k in range(1, 51))
    terminal = Terminal(False, tmp_path / "seen")
    assert demo.run_logged([sys.executable, "-c", lines], tmp_path / "stage.log", terminal) == 0
    assert terminal.getvalue() == "   step 1/50 0.1s (ETA 0.0 min) loss 1\n   step 50/50 0.1s (ETA 0.0 min) loss 1\n"
    assert (tmp_path / "stage.log").read_text().count("step ") == 50
