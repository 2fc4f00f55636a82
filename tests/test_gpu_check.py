"""`oreal-mega bench gpu-check`: its CPU mode end to end (the same code paths as on a GPU, tiny sizes),
and how a failing stage shows in the table and the exit status."""
import json
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
    assert table.strip() in proc.stdout and "mode cpu: tiny sizes" in table and "11 PASS, 0 FAIL" in table
    rows = _rows(table)
    assert [row[2] for row in rows.values()] == ["PASS"] * 11, table
    kernel_tests = next(v for k, v in rows.items() if k.startswith("(a)"))
    assert re.fullmatch(r"\d+ passed, 2 skipped", kernel_tests[0])  # the 2 that run only outside the interpreter
    run, determinism, resume = [v for k, v in rows.items() if k.startswith("(b)")]
    assert run[0].startswith("3 steps") and "MFU" in run[1]
    # the policy is frozen at step 0: its token-RM loss and gradient norm, pass rate and kept samples
    assert determinism[:2] == ["yes", "4 values (step 0: trm_loss, trm_grad_norm, pass_rate, kept_samples) "
                                      "bit-equal"]
    assert resume[0] == "yes" and "16 values (steps 1-2: " in resume[1] and "bit-equal" in resume[1]
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
    assert gpu_check._compare(full, full, (0,)) == (True, "2 values (step 0: trm_loss, pass_rate) bit-equal")
    assert gpu_check._compare(full, full, (1, 2)) == (True, f"9 values (steps 1-2: {', '.join(gpu_check.COMPARED)}) "
                                                            "bit-equal")
    cut = {**full, 2: {**full[2], "kl": 1.0 + 1e-6, "loss": 1.5}}
    equal, detail = gpu_check._compare(cut, full, (1, 2))
    assert not equal and detail == "2 of 9 values differ; largest: step 2 loss 1.5 vs 1.0 (relative 5.0e-01)"
    assert gpu_check._compare(cut, full, (0,))[0]
    noisy = {**full, 0: {**full[0], "trm_loss": 0.5 + 1e-9}}
    assert gpu_check._compare(noisy, full, (0,))[1].startswith("1 of 2 values differ; largest: step 0 trm_loss")
    absent = {**full, 2: {}}  # a metric one run did not log differs
    assert gpu_check._compare(absent, full, (1, 2))[1].startswith("8 of 9 values differ")
    assert gpu_check._compare({0: {}, 1: {}}, full, (1, 2)) == (
        False, "steps logged: cut run [0, 1], uninterrupted run [0, 1, 2]")
    assert gpu_check._compare({0: {}}, {0: {}}, (0,)) == (False, "no metric to compare at step 0")


def _oreal_rows(monkeypatch, tmp_path, step_0_trm_loss: float, step_2_loss: float, warning: str = "") -> dict:
    """Stage (b)'s rows, what → (result, numbers, passed), for made-up runs: the cut run's trm_loss at
    step 0 and loss at step 2 as given, everything else equal to the uninterrupted run's."""
    def metrics(step: int, **changes) -> dict:
        return {"step": step, **dict.fromkeys(gpu_check.COMPARED, 1.0), **changes}

    runs = {"full": [metrics(0), metrics(1), metrics(2)],
            "cut": [metrics(0, trm_loss=step_0_trm_loss), metrics(1), metrics(2, loss=step_2_loss)]}

    def torchrun(script, nproc, args, timeout):
        out = Path(next(a for a in args if str(a).startswith("train.out_dir=")).removeprefix("train.out_dir="))
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in runs[out.name]))
        return "resumed from its checkpoint at step 1" + warning

    def write_model(directory, fields, dtype):
        directory.mkdir(parents=True)
        (directory / "config.json").write_text('{"vocab_size": 8}')
        return directory

    monkeypatch.setattr("oreal_mega.testing.launch.torchrun", torchrun)
    monkeypatch.setattr(gpu_check, "write_model", write_model)
    monkeypatch.setattr("oreal_mega.rollout.synthetic_dump.write_synthetic_dump", lambda *a, **k: tmp_path / "p")
    rows = gpu_check.oreal_run(gpu_check.CPU, tmp_path, gpu_check.Log(None))
    return {row.what.split(":")[0]: (row.result, row.numbers, row.passed) for row in rows[1:]}


def test_nondeterminism_is_reported_as_such_and_not_as_a_resume_difference(monkeypatch, tmp_path):
    determinism = "(b) step 0 (reference and token-RM passes) of the two fresh runs"
    resume = "(b) stopped after step 0's checkpoint, resumed for steps 1-2"
    rows = _oreal_rows(monkeypatch, tmp_path / "noisy", step_0_trm_loss=1.0 + 1e-7, step_2_loss=1.0 + 1e-6,
                       warning="\nUserWarning: scatter_add_cuda_ does not have a deterministic implementation")
    assert rows[determinism][0] == "no: not deterministic on this machine" and not rows[determinism][2]
    assert rows[determinism][1].endswith("ops without a deterministic implementation (warned): scatter_add_cuda_")
    assert rows[resume][0] == "undecided: step 0 differs already (determinism row)" and not rows[resume][2]
    rows = _oreal_rows(monkeypatch, tmp_path / "resume_bug", step_0_trm_loss=1.0, step_2_loss=1.5)
    assert rows[determinism][0] == "yes" and rows[determinism][2]
    assert rows[resume][0] == "no" and "largest: step 2 loss 1.5 vs 1.0" in rows[resume][1]
