"""The `oreal-mega` entry point lists its jobs and reports user errors without a traceback."""
import json
import subprocess
import sys

import pytest

from oreal_mega.cli import COMMANDS


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
