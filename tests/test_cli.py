"""The `oreal-mega` entry point lists its jobs and reports user errors without a traceback."""
import subprocess
import sys

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
