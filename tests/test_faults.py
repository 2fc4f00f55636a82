"""The fault matrix (README "Reliability"): a tiny OREAL run at DP=2 (2 processes) is killed or
broken by `python -m oreal_mega.testing.faults`, then restarted; every restart must resume from the
last complete checkpoint and re-run the lost steps exactly as an uninterrupted run did."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from oreal_mega.testing.launch import _free_port, torchrun
from oreal_mega.testing.runs import write_tiny_rl_config
from oreal_mega.trainer.checkpointer import Checkpointer, CheckpointError

pytestmark = pytest.mark.slow

STEPS = 5
DETERMINISTIC = ["pass_rate", "kept_samples", "response_len_mean", "loss", "kl", "entropy", "policy_grad_norm",
                 "trm_loss", "trm_grad_norm", "parity_max_abs"]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A tiny tied Qwen2, prompts it cannot solve (every sample is kept: every pass runs), the token-RM
    on, a checkpoint after every step and all of them kept."""
    return write_tiny_rl_config(tmp_path_factory.mktemp("faults"), STEPS, keep_last=0, optim={"clip_grad": 1e9})


@pytest.fixture(scope="module")
def reference(config) -> Path:
    """The uninterrupted run."""
    out = config.parent / "reference"
    torchrun("-m oreal_mega train", 2, [config, f"train.out_dir={out}"])
    return out


def _launch(config: Path, out: Path, *faults: str, overrides: tuple[str, ...] = (),
            torchrun_args: tuple[str, ...] = ()) -> tuple[int, str]:
    """`python -m oreal_mega.testing.faults FAULTS CONFIG` on 2 processes; (exit status, output).
    The output goes to a file, which every process of the run inherits: none may be left holding it."""
    log = out.parent / f"{out.name}-{len(list(out.parent.glob(f'{out.name}-*.log')))}.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           *torchrun_args, "-m", "oreal_mega.testing.faults", *faults, str(config), f"train.out_dir={out}",
           *overrides]
    with log.open("w") as handle:
        returncode = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=600,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    _assert_no_process_holds(log)
    return returncode, log.read_text()


def _assert_no_process_holds(path: Path) -> None:
    """No live process has `path` open (10 s grace for workers dying with their launcher); any found
    is killed, and named in the failure."""
    def holders() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            try:
                if any(f.path == str(path) for f in process.open_files()):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    deadline = time.time() + 10
    while holders() and time.time() < deadline:
        time.sleep(0.2)
    left = []
    for process in holders():
        try:
            left.append((process.pid, " ".join(process.cmdline())[:200]))
            process.kill()
        except psutil.NoSuchProcess:
            pass
    assert not left, f"processes of the run outlived it: {left}"


def _restart(config: Path, out: Path) -> str:
    returncode, output = _launch(config, out)
    assert returncode == 0, output[-6000:]
    return output


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_steps_equal(run_dir: Path, reference: Path, steps: range) -> None:
    """`run_dir` logged exactly `steps`, each once, with the reference's deterministic metrics."""
    records, expected = _records(run_dir), {r["step"]: r for r in _records(reference)}
    assert [r["step"] for r in records] == list(steps)
    for record in records:
        for key in DETERMINISTIC:
            assert key in record or record["step"] == 0, (record["step"], key)  # step 0: actor frozen
            assert record.get(key) == expected[record["step"]].get(key), (record["step"], key)


def _checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def _resumed(out: Path, step: int) -> str:
    return f"resumed from {out / 'checkpoints' / f'step_{step - 1:06d}'} at step {step}"


def test_sigkill_in_each_phase_then_restart_resumes_exactly(config, reference, tmp_path):
    """One run, SIGKILLed (torchrun and both workers) four times: in the rollout of step 1, the
    policy update of step 2, the weight sync of step 3, and the checkpoint write of step 4 after a
    shard is on disk. Each restart resumes from the last complete checkpoint (a killed step is
    never logged, a partial `.tmp` checkpoint never used) and re-runs the lost step exactly."""
    out = tmp_path / "run"
    for phase, step in (("rollout", 1), ("update", 2), ("sync", 3), ("checkpoint", 4)):
        returncode, output = _launch(config, out, "--kill-at", f"{phase}:{step}")
        assert returncode == -9, output[-6000:]
        if step > 1:
            assert _resumed(out, step - 1) in output
        _assert_steps_equal(out, reference, range(step))
        assert _checkpoints(out)[:step] == [f"step_{s:06d}" for s in range(step)]
    partial = out / "checkpoints" / "step_000004.tmp"
    assert _checkpoints(out) == [f"step_{s:06d}" for s in range(4)] + [partial.name]
    assert list(partial.glob("rank_*.pt")) and not (partial / "manifest.json").exists()

    output = _restart(config, out)
    assert _resumed(out, 4) in output
    _assert_steps_equal(out, reference, range(STEPS))
    assert _checkpoints(out) == [f"step_{s:06d}" for s in range(STEPS)]


def _stopped_after(reference: Path, out: Path, step: int) -> None:
    """`out`: the reference run's directory without its checkpoints after `step`, as if the run had
    stopped there (metrics.jsonl still has the later steps: a restart must drop them)."""
    shutil.copytree(reference, out)
    for directory in (out / "checkpoints").iterdir():
        if int(directory.name.removeprefix("step_")) > step:
            shutil.rmtree(directory)


def _sizes(directory: Path) -> dict[str, int]:
    return {str(f.relative_to(directory)): f.stat().st_size for f in sorted(directory.rglob("*")) if f.is_file()}


def _flip_middle_bytes(path: Path) -> None:
    """Same-size corruption inside tensor data, which torch.load alone would not notice."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(data)


def test_corrupt_newest_checkpoints_fall_back_to_the_last_readable_one(config, reference, tmp_path):
    """The newest checkpoint has a same-size corrupt shard on rank 1 only (bytes overwritten inside
    tensor data: torch.load would take it, its zip CRC does not); the one before has a truncated
    shard (its manifest names another size). Both ranks skip both, naming the files, and resume from
    the third exactly."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "checkpoints" / f"step_{STEPS - 1:06d}" / "rank_00001.pt"
    _flip_middle_bytes(newest)
    truncated = out / "checkpoints" / f"step_{STEPS - 2:06d}" / "rank_00000.pt"
    truncated.write_bytes(truncated.read_bytes()[:1000])

    output = _restart(config, out)
    assert f"skipping checkpoint {newest.parent}: checkpoint file {newest} is corrupt" in output
    assert "fails its CRC check" in output
    assert f"skipping checkpoint {truncated.parent}: rank_00000.pt has 1000 bytes, the manifest says" in output
    assert _resumed(out, STEPS - 2) in output
    _assert_steps_equal(out, reference, range(STEPS))


def test_engine_death_stops_naming_the_step_and_the_last_checkpoint(config, reference, tmp_path):
    """vLLM's engine core dies in the rollout of step 3: the run exits non-zero with an error naming
    the step and the last checkpoint, leaves the checkpoints as they were, and a restart resumes."""
    out = tmp_path / "run"
    _stopped_after(reference, out, 2)
    before = _sizes(out / "checkpoints")
    returncode, output = _launch(config, out, "--engine-dies-at", "3")
    assert returncode != 0
    last = out / "checkpoints" / "step_000002"
    assert re.search(rf"RolloutEngineError: step 3: vLLM engine core died during generate: .*"
                     rf"\(last checkpoint: {re.escape(str(last))}\)$", output, re.MULTILINE), output[-6000:]
    assert _sizes(out / "checkpoints") == before

    assert _resumed(out, 3) in _restart(config, out)
    _assert_steps_equal(out, reference, range(STEPS))


def test_full_disk_during_checkpoint_stops_cleanly_and_keeps_the_previous_one(config, reference, tmp_path):
    """Every rank's shard write of step 3's checkpoint fails with ENOSPC halfway: every rank stops, with
    one error line naming the directory and the intact previous checkpoint, the partial directory is
    removed, step 3 is not logged, and a restart resumes from step 2's checkpoint."""
    out = tmp_path / "run"
    _stopped_after(reference, out, 2)
    before = _sizes(out / "checkpoints")
    returncode, output = _launch(config, out, "--disk-full-at", "3")
    assert returncode != 0
    partial = out / "checkpoints" / "step_000003.tmp"
    message = (f"oreal-mega train: error: the checkpoint of step 3 could not be written to {partial} "
               f"(rank 0 could not write rank_00000.pt: OSError: [Errno 28] No space left on device")
    assert message in output and "CheckpointError" not in output, output[-6000:]  # one line, no traceback
    assert f"the previous checkpoint {out / 'checkpoints' / 'step_000002'} is untouched" in output
    assert not partial.exists() and _sizes(out / "checkpoints") == before
    assert [r["step"] for r in _records(out)] == [0, 1, 2]

    assert _resumed(out, 3) in _restart(config, out)
    _assert_steps_equal(out, reference, range(STEPS))


def test_sigterm_mid_step_saves_that_step_exits_cleanly_and_resumes_exactly(config, reference, tmp_path):
    """From the reference run cut after step 1, with checkpoints only at the last step (save_every=100):
    SIGTERM to rank 1 alone in the policy update of step 2, then, restarted, to the torchrun agent in the
    update of step 3 (torchrun passes it to both ranks). Each time both ranks finish the step, agree to
    stop, save it and exit 0 (torchrun itself exits 1 after passing a signal on, without having to
    SIGKILL anyone); the last restart resumes at step 4, and every step equals the reference's."""
    out = tmp_path / "run"
    _stopped_after(reference, out, 1)
    stop_line = "stopping before step {} (SIGTERM received): checkpoint {} written in"
    returncode, output = _launch(config, out, "--sigterm-at", "update:2:1", overrides=("train.save_every=100",))
    assert returncode == 0, output[-6000:]
    assert stop_line.format(3, out / "checkpoints" / "step_000002") in output
    assert "run stopped early" in output
    _assert_steps_equal(out, reference, range(3))
    assert _checkpoints(out) == [f"step_{s:06d}" for s in range(3)]

    returncode, output = _launch(config, out, "--sigterm-at", "update:3", overrides=("train.save_every=100",),
                                 torchrun_args=("--shutdown-timeout=120",))
    assert returncode == 1 and "death signal, shutting down workers" in output, output[-6000:]
    assert "forcefully exiting" not in output, output[-6000:]  # both ranks exited within the grace period
    assert _resumed(out, 3) in output and stop_line.format(4, out / "checkpoints" / "step_000003") in output
    _assert_steps_equal(out, reference, range(4))

    assert _resumed(out, 4) in _restart(config, out)
    _assert_steps_equal(out, reference, range(STEPS))
    assert _checkpoints(out) == [f"step_{s:06d}" for s in range(STEPS)]


def test_unreadable_checkpoints_restore_nothing_and_none_left_is_an_error(megatron_world, tmp_path):
    """In process: a corrupt newest checkpoint restores nothing (the model keeps the older
    checkpoint's weights); when every checkpoint is unreadable, resume refuses to start afresh."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpointer = Checkpointer(tmp_path, {"m": [model]}, {"m": (optimizer, scheduler)}, save_every=1,
                                keep_last=0, total_steps=2)
    for step in (0, 1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        checkpointer.maybe_save(step)
    newest = tmp_path / "checkpoints" / "step_000001" / "rank_00000.pt"
    _flip_middle_bytes(newest)
    with torch.no_grad():
        model.weight.fill_(7.0)
    with pytest.warns(UserWarning, match=rf"skipping checkpoint .*step_000001: checkpoint file {newest} is corrupt"):
        assert checkpointer.resume() == 1
    assert torch.equal(model.weight, torch.zeros(2, 3))

    _flip_middle_bytes(tmp_path / "checkpoints" / "step_000000" / "rank_00000.pt")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no checkpoint in .* can be resumed from"):
        checkpointer.resume()
