"""Stopping early (trainer/preemption.py): the time-limit forms, the deadline, the margin, and the
collective decision on SIGTERM / SIGUSR1 or a deadline. The fault matrix runs it end to end
(tests/test_faults.py::test_sigterm_mid_step_saves_that_step_exits_cleanly_and_resumes_exactly)."""
import multiprocessing
import os
import signal
import time

import psutil
import pytest

from oreal_mega.distributed import STOP_SIGNALS, as_helper_process
from oreal_mega.errors import UserError
from oreal_mega.trainer.preemption import EXIT_MARGIN_S, StopRequests, out_of_time, run_deadline, time_limit_seconds


@pytest.mark.parametrize("value, seconds", [(90, 90.0), (2.5, 2.5), ("3600", 3600.0), ("3:50:00", 13800.0),
                                            ("03:50:00", 13800.0), ("1-02:00:30", 93630.0), (None, None)])
def test_time_limit_forms(value, seconds):
    assert time_limit_seconds(value) == seconds


@pytest.mark.parametrize("value", ["90 min", "1:61:00", "12:00", "", 0, -5.0, float("inf")])
def test_bad_time_limits_name_the_key_and_value(value):
    with pytest.raises(UserError, match=rf"^train.time_limit in run.yaml: {value!r} is not a"):
        time_limit_seconds(value, "train.time_limit in run.yaml")


def test_deadline_is_the_earlier_of_the_time_limit_and_the_slurm_end_time():
    assert run_deadline(None, 1000.0, {}) is None
    assert run_deadline(600.0, 1000.0, {}) == 1600.0
    assert run_deadline(None, 1000.0, {"SLURM_JOB_END_TIME": "5000"}) == 5000.0
    assert run_deadline(600.0, 1000.0, {"SLURM_JOB_END_TIME": "5000"}) == 1600.0
    assert run_deadline(9000.0, 1000.0, {"SLURM_JOB_END_TIME": "5000"}) == 5000.0
    for unusable in ("", "0", "soon", "-1"):
        assert run_deadline(600.0, 1000.0, {"SLURM_JOB_END_TIME": unusable}) == 1600.0


def test_out_of_time_counts_the_next_step_its_save_and_the_margin():
    step, save, margin = 100.0, 30.0, 10.0
    fits = 1000.0 - step - save - margin  # the latest moment one more step and its save still fit
    assert not out_of_time(fits, 1000.0, step, save, margin)
    assert out_of_time(fits + 0.1, 1000.0, step, save, margin)
    # no save measured yet: it is taken to last as long as the step
    assert out_of_time(fits, 1000.0, step, None, margin) and not out_of_time(1000.0 - 2 * step - margin, 1000.0,
                                                                                step, None, margin)
    assert not out_of_time(999.0, None, step, save, margin)  # no deadline
    assert not out_of_time(999.0, 1000.0, 0.0, None, margin)  # nothing measured: no estimate, no stop
    assert out_of_time(1000.0 - step - save - EXIT_MARGIN_S + 1, 1000.0, step, save)  # the default margin


@pytest.fixture
def stop_handlers():
    """Restores the SIGTERM / SIGUSR1 handlers that StopRequests replaces in this process."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_or_a_passed_deadline_stops_at_the_next_agreement(megatron_world, stop_handlers, monkeypatch):
    """In a world of one: a real SIGUSR1, then a second signal, are recorded, not fatal; a deadline stops
    only once a step was measured that does not fit before it."""
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    stop = StopRequests(None)
    assert stop.agreed(megatron_world.device) is None
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing
    assert stop.agreed(megatron_world.device) == "SIGUSR1 received"

    late = StopRequests("1:00:00")  # the deadline is an hour after this process started
    assert late.agreed(megatron_world.device) is None
    late.measured(step_seconds=1.0, save_seconds=0.5)
    assert late.agreed(megatron_world.device) is None
    late.measured(step_seconds=late.deadline - time.time(), save_seconds=None)
    assert late.agreed(megatron_world.device).startswith("the next step and its checkpoint would not end 60 s before")


def _rank(rank: int, store: str, results) -> None:
    """Rank 1 receives SIGTERM; only rank 0 has a deadline, which its measured step no longer fits."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    if rank == 0:
        os.environ["SLURM_JOB_END_TIME"] = str(int(time.time()) + 3600)
    stop = StopRequests(None)
    answers = [stop.agreed(torch.device("cpu"))]
    if rank == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    answers.append(stop.agreed(torch.device("cpu")))
    stop.received = 0  # (only to see the time decision alone next)
    stop.measured(step_seconds=3600.0, save_seconds=1.0)  # on rank 1 no deadline: only rank 0 decides
    answers.append(stop.agreed(torch.device("cpu")))
    results.put((rank, answers))
    dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_agrees_on_a_signal_that_reached_one_and_on_rank_0s_deadline(tmp_path, monkeypatch):
    """Two gloo ranks in spawned processes."""
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_rank, args=(rank, str(tmp_path / "store"), results)) for rank in (0, 1)]
    for process in processes:
        process.start()
    try:
        answers = dict(results.get(timeout=120) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert answers[0] == answers[1]
    none, signalled, late = answers[0]
    assert none is None and signalled == "SIGTERM received"
    assert late.startswith("the next step and its checkpoint would not end 60 s before")


def _helper(ready) -> None:
    as_helper_process()
    ready.set()
    time.sleep(120)


def _parent_of_a_helper(helper_pid) -> None:
    """Starts a helper, reports its pid, waits to be killed."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    helper = context.Process(target=_helper, args=(ready,))
    helper.start()
    ready.wait(60)
    helper_pid.put(helper.pid)
    time.sleep(120)


def test_a_helper_process_ignores_stop_signals_and_dies_with_its_parent():
    """A verifier worker or the checkpoint writer's server: SIGTERM / SIGUSR1 leave it running, the
    SIGKILL of the rank that started it takes it along (Linux)."""
    context = multiprocessing.get_context("spawn")
    helper_pid = context.Queue()
    parent = context.Process(target=_parent_of_a_helper, args=(helper_pid,))
    parent.start()
    helper = psutil.Process(helper_pid.get(timeout=60))
    for sig in STOP_SIGNALS:
        helper.send_signal(sig)
    time.sleep(0.5)
    assert helper.is_running() and helper.status() != psutil.STATUS_ZOMBIE
    parent.kill()
    parent.join()
    helper.wait(timeout=10)  # raises psutil.TimeoutExpired if it outlived its parent
