"""MetricsLog keeps one record per step when a run resumes over an earlier run's logs; PhaseTimes
reads the clock after the device's queued work."""
import json
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from oreal_mega.trainer.metrics import MetricsLog, PhaseTimes


def _log(run_dir, steps, start_step=None, offset=0.0):
    log = MetricsLog(run_dir, total_steps=6, tensorboard=True, wandb_project=None, config={}, enabled=True,
                     start_step=start_step)
    for step in steps:
        log.log(step, {"loss": step + offset})
    log.close()


def _jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("loss")]


def test_resume_drops_the_earlier_runs_records_from_the_resume_step(tmp_path):
    _log(tmp_path, range(5))  # killed after logging step 4; its last checkpoint was step 2
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "lo')  # a line cut short by the kill
    _log(tmp_path, range(3, 6), start_step=3, offset=0.5)
    assert [(r["step"], r["loss"]) for r in _jsonl(tmp_path)] == [(0, 0), (1, 1), (2, 2), (3, 3.5), (4, 4.5),
                                                                  (5, 5.5)]
    assert _tensorboard(tmp_path) == [(0, 0), (1, 1), (2, 2), (3, 3.5), (4, 4.5), (5, 5.5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "tensorboard"]  # no temporary


def test_a_run_from_step_0_replaces_the_logs_and_no_start_step_appends(tmp_path):
    _log(tmp_path, range(2))
    _log(tmp_path, range(2), start_step=0, offset=0.5)
    assert [(r["step"], r["loss"]) for r in _jsonl(tmp_path)] == [(0, 0.5), (1, 1.5)]
    _log(tmp_path, [2])
    assert [r["step"] for r in _jsonl(tmp_path)] == [0, 1, 2]


def test_phase_times_wait_for_the_device_at_every_boundary(monkeypatch):
    """On CUDA a phase's kernels may still run when its Python returns: the fake synchronize stands for
    0.05 s of such work, which must count in the phase and the total. On CPU nothing is waited for."""
    waits = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: (waits.append(1), time.sleep(0.05)))
    times = PhaseTimes(torch.device("cuda", 0))
    with times.phase("train"):
        pass  # the launches return at once
    total = times.total()
    assert len(waits) == 4  # start of the step, of the phase, its end, the total
    assert times.seconds["time_train"] >= 0.05 and total >= 3 * 0.05
    cpu = PhaseTimes(torch.device("cpu"))
    with cpu.phase("train"):
        pass
    cpu.total()
    assert len(waits) == 4 and set(cpu.seconds) == {"time_train"}


def test_mfu_counts_only_the_passes_that_ran():
    """The reference forward (a third of a forward+backward) always; the token-RM's and the policy's
    forward+backward only when they ran: a step with the actor frozen counts no policy FLOPs."""
    from types import SimpleNamespace

    from oreal_mega.models.flops import model_flops
    from oreal_mega.models.hf_config import parse_arch
    from oreal_mega.testing.layouts import TINY_CONFIGS
    from oreal_mega.trainer.batch import Trajectory
    from oreal_mega.trainer.learner import Learner

    learner = SimpleNamespace(arch=parse_arch(TINY_CONFIGS["qwen2"]), token_rm=None)
    trajectories = [Trajectory([1, 2], [3, 4, 5], True, 1.0, 0.5), Trajectory([1], [2, 3], False, -1.0, 0.5)]
    one_pass = model_flops(learner.arch, 8, [5, 3])  # forward+backward of both sequences

    def flops(policy_trained: bool) -> float:
        return Learner._training_flops(learner, trajectories, policy_trained)

    assert flops(False) == pytest.approx(one_pass / 3) and flops(True) == pytest.approx(one_pass * 4 / 3)
    learner.token_rm = object()
    assert flops(False) == pytest.approx(one_pass * 4 / 3) and flops(True) == pytest.approx(one_pass * 7 / 3)
