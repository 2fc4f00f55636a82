"""The `oreal-mega` entry point lists its jobs and reports user errors without a traceback."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from oreal_mega import cli
from oreal_mega.cli import COMMANDS
from oreal_mega.errors import UserError
from oreal_mega.testing.launch import _free_port


def _run(*args):
    return subprocess.run([sys.executable, "-m", "oreal_mega", *args], capture_output=True, text=True)


def test_help_lists_every_command_with_its_summary():
    out = _run("--help")
    assert out.returncode == 0
    for name, (_, summary) in COMMANDS.items():
        assert name in out.stdout and summary.split()[0] in out.stdout


def test_console_script_matches_module():
    out = subprocess.run(["oreal-mega", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == _run("--help").stdout


def test_bench_user_error_has_no_traceback(tmp_path):
    out = _run("bench", "train", "--hf-config", str(tmp_path / "missing.json"))
    assert out.returncode == 2
    assert "HF config not found" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_eval_and_generate_check_the_architecture_as_train_does(tmp_path, command):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"]}))
    (tmp_path / "p.jsonl").write_text(json.dumps({"question": "1+1?", "gold_answer": "2"}) + "\n")
    args = [str(tmp_path), str(tmp_path / "p.jsonl")] + (["--out", str(tmp_path / "o.jsonl")] if command == "generate" else [])
    out = _run(command, *args)
    assert out.returncode == 2
    assert out.stderr == (f"oreal-mega {command}: error: {tmp_path / 'config.json'}: architectures=['MistralForCausalLM'] "
                          "is not supported (supported: Qwen2ForCausalLM, LlamaForCausalLM)\n")


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_eval_and_generate_check_the_verifier_choice_first(tmp_path, command):
    """--backend / --fallback are checked as verifier.backend / verifier.fallback are, before the model is read."""
    args = [str(tmp_path / "no-model"), str(tmp_path / "none.jsonl"), "--backend", "math-verify", "--fallback",
            "last_number"] + (["--out", str(tmp_path / "o.jsonl")] if command == "generate" else [])
    out = _run(command, *args)
    assert out.returncode == 2
    assert out.stderr == (f"oreal-mega {command}: error: verifier.fallback in the command line: 'last_number' "
                          "applies to the oreal backend only (math-verify always falls back to the last expression "
                          "it finds); use 'none'\n")


def test_generate_judges_its_samples_with_the_chosen_backend_and_fallback():
    """The verdicts `oreal-mega generate --backend/--fallback` writes (generate's verify_samples, on fixed samples)."""
    import torch

    from oreal_mega.rollout.base import Sample
    from oreal_mega.rollout.generate_cli import verify_samples
    from oreal_mega.rollout.prompts import records_from_dicts
    from oreal_mega.verifier import math_verify_backend

    records = records_from_dicts([{"question": "How many apples?", "gold_answer": "7"}])
    samples = [[Sample(0, [1, 2], text, torch.zeros(2), "stop") for text in ("So there are 7 apples.", "\\boxed{6}")]]
    expected = {("oreal", "none"): ["no_answer", "wrong"], ("oreal", "last_number"): ["correct", "wrong"]}
    if math_verify_backend.available():
        expected["math-verify", "none"] = ["correct", "wrong"]
    for (backend, fallback), statuses in expected.items():
        assert [v.status for v in verify_samples(records, samples, backend, fallback)[0]] == statuses


@pytest.mark.slow
@pytest.mark.parametrize("override, error", [
    (None, "model.path in {config}: no directory {none}"),
    ("model.dtype=bf16", "{config} + command line: key 'model.dtype' expects 'bfloat16' | 'float32', got str 'bf16'"),
])
def test_under_torchrun_a_config_error_is_printed_once_and_every_rank_exits_2(tmp_path, override, error):
    config = tmp_path / "rl.yaml"
    config.write_text(f"model:\n  path: {tmp_path / 'none'}\n")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                          f"--master-port={_free_port()}", "-m", "oreal_mega", "train", str(config),
                          *([override] if override else [])],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = "oreal-mega train: error: " + error.format(config=config, none=tmp_path / "none")
    assert out.stdout == "" and out.stderr.splitlines().count(line) == 1, out.stderr
    # torchrun's failure summary (it always prints one) shows the line as the root cause, and both exit codes
    assert re.findall(r"exitcode +: (-?\d+)", out.stderr) == ["2", "2"], out.stderr
    assert out.stderr.rstrip().splitlines()[-2].strip() == f"traceback : {line}"


def test_a_rank_whose_peers_did_not_fail_reports_its_own_error(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setattr(cli, "PEER_GRACE_S", 0.01)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli._report("train", UserError("data.prompts in rl.yaml: p.jsonl:2: not valid JSON"))
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "oreal-mega train: error on rank 3: data.prompts in rl.yaml: p.jsonl:2: not valid JSON\n"
