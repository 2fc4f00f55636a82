"""`oreal-mega bench gpu-check`: its CPU mode end to end (the same code paths as on a GPU, tiny sizes),
and how a failing stage shows in the table and the exit status."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import oreal_mega
from oreal_mega.bench import gpu_check


def _rows(table: str) -> dict[str, list[str]]:
    """The table's rows as check → [result, numbers, status]."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| (") and len(cells) == 4:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the check runs the GPU sizes (minutes): run it "
                                                      "directly")
def test_cpu_mode_runs_every_check_and_passes(tmp_path):
    """In a process where vLLM cannot be imported, as on the GPU machine."""
    out = tmp_path / "gpu_check.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    proc = subprocess.run([sys.executable, "-m", "oreal_mega.testing.no_vllm", "bench", "gpu-check", "--out", str(out),
                           "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=900, env=env,
                          cwd=Path(oreal_mega.__file__).parents[1])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    table = out.read_text()
    assert table.strip() in proc.stdout and "mode cpu: tiny sizes" in table and "10 PASS, 0 FAIL" in table
    rows = _rows(table)
    assert [row[2] for row in rows.values()] == ["PASS"] * 10, table
    kernel_tests = next(v for k, v in rows.items() if k.startswith("(a)"))
    assert re.fullmatch(r"\d+ passed, 2 skipped", kernel_tests[0])  # the 2 that run only outside the interpreter
    run, resume = [v for k, v in rows.items() if k.startswith("(b)")]
    assert run[0].startswith("3 steps") and "MFU" in run[1]
    assert resume[0] == "yes" and "20 values" in resume[1] and "bit-equal" in resume[1]
    kernels = [v for k, v in rows.items() if k.startswith("(c)")]
    assert len(kernels) == 4
    for result, numbers, _ in kernels:
        ms, floors = re.fullmatch(r"([\d.]+) ms, ([\d.]+)× floor", result).groups()
        assert float(ms) > 0 and float(floors) > 0 and "GiB extra" in numbers
    train = [v for k, v in rows.items() if k.startswith("(d)")]
    assert len(train) == 2 and all(float(re.fullmatch(r"MFU ([\d.]+)%", r[0]).group(1)) > 0 for r in train)
    [offload] = [v for k, v in rows.items() if k.startswith("(e)")]
    assert offload[0].startswith("park ") and "round trip bit-exact" in offload[1]
    log = out.with_suffix(".log").read_text()
    assert "15 passed" in log and "resumed from" in log


def test_a_failing_stage_is_a_fail_row_and_the_exit_status(tmp_path, monkeypatch, capsys):
    def broken(sizes, work, log):
        raise RuntimeError("first line\nthe cause: ValueError: out of bananas")

    def fine(sizes, work, log):
        return [gpu_check.Row("(c) something", "1.0 ms", "numbers", True)]

    monkeypatch.setattr(gpu_check, "stages", lambda: (("(a) broken", broken), ("(c) fine", fine)))
    args = type("Args", (), {"out": tmp_path / "t.md", "workdir": tmp_path / "w"})
    assert gpu_check.run(args) == 1
    rows = _rows(capsys.readouterr().out)
    assert rows == {"(a) broken": ["error", "the cause: ValueError: out of bananas", "FAIL"],
                    "(c) something": ["1.0 ms", "numbers", "PASS"]}
    assert "1 PASS, 1 FAIL" in (tmp_path / "t.md").read_text()
    assert "out of bananas" in (tmp_path / "t.log").read_text()


def test_compare_names_the_largest_difference():
    full = {0: {"trm_loss": 0.5, "pass_rate": 0.25}, 1: {"loss": 1.0}, 2: dict.fromkeys(gpu_check.COMPARED, 1.0)}
    assert gpu_check._compare(full, full) == (True, f"11 values (steps 0-2: {', '.join(gpu_check.COMPARED)}) "
                                                    "bit-equal")
    resumed = {**full, 2: {**full[2], "kl": 1.0 + 1e-6, "loss": 1.5}}
    equal, detail = gpu_check._compare(resumed, full)
    assert not equal and detail == ("2 of 11 values differ; largest: step 2 loss 1.5 vs 1.0 (relative 5.0e-01); "
                                    "step 0 equal")
    noisy = {**resumed, 0: {**full[0], "trm_loss": 0.5 + 1e-9}}
    assert gpu_check._compare(noisy, full)[1].endswith("step 0 differs too: the two runs are not deterministic")
    assert gpu_check._compare({0: {}, 1: {}}, full)[1] == "steps logged: resumed [0, 1], uninterrupted [0, 1, 2]"
    assert gpu_check._compare({**full, 2: {}}, full)[1].startswith("missing at step 2: loss, kl")
