"""VerifierPool: real worker processes, hard timeouts, replacement of killed workers, error reporting."""
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from oreal_mega.verifier import VerifierPool, verify
from oreal_mega.bench.verifier import make_batch, pathological_items

pytestmark = pytest.mark.slow

HANG = "<hang until killed; flag file:"


def verify_or_hang(response, gold, *, finished=True):
    """The real verifier, except that a response carrying HANG never returns (a stand-in for a stuck sympy call).

    It first creates the flag file named in the response, so a test knows the worker is now stuck.
    """
    if response.startswith(HANG):
        Path(response[len(HANG):]).touch()
        time.sleep(3600)
    return verify(response, gold, finished=finished)


def verify_or_raise(response, gold, *, finished=True):
    if response == "raise":
        raise ValueError("judge exploded on purpose")
    return verify(response, gold, finished=finished)


def test_pool_agrees_with_in_process_verify():
    responses, golds, finished, _ = make_batch(96, seed=7)
    with VerifierPool(num_workers=2, timeout_s=30) as pool:
        verdicts = pool.verify_batch(responses, golds, finished)
        assert pool.counters() == {"verdicts": 96, "timeouts": 0, "errors": 0, "worker_restarts": 0}
    assert verdicts == [verify(r, g, finished=f) for r, g, f in zip(responses, golds, finished)]


def test_timeout_kills_and_replaces_the_worker(tmp_path):
    responses = ["\\boxed{1}", "\\boxed{2}", HANG + str(tmp_path / "a"), "\\boxed{4}", "\\boxed{5}",
                 HANG + str(tmp_path / "b"), "\\boxed{7}", "\\boxed{8}"]
    golds = ["1", "2", "3", "4", "5", "6", "7", "0"]
    with VerifierPool(num_workers=2, timeout_s=1.0, chunk_size=3, verify_fn=verify_or_hang) as pool:
        pool.verify_batch(["\\boxed{1}"], ["1"])  # wait for start-up so that only the items are timed
        old_pids = pool.worker_pids
        verdicts = pool.verify_batch(responses, golds)
        assert [v.status for v in verdicts] == ["correct"] * 2 + ["timeout"] + ["correct"] * 2 + ["timeout"] + \
            ["correct", "wrong"]
        assert "exceeded 1 s" in verdicts[2].message
        assert pool.timeouts == 2 and pool.worker_restarts == 2 and pool.errors == 0
        killed = set(old_pids) - set(pool.worker_pids)
        assert killed and all(not _alive(pid) for pid in killed)
        # the replacements work
        assert [v.status for v in pool.verify_batch(["\\boxed{3}"] * 4, ["3"] * 4)] == ["correct"] * 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead, just not yet reaped


def test_worker_killed_from_outside_gives_error_and_is_replaced(tmp_path):
    flag = tmp_path / "stuck"
    with VerifierPool(num_workers=1, timeout_s=600, chunk_size=1, verify_fn=verify_or_hang) as pool:
        pid = pool.worker_pids[0]

        def kill_when_stuck():
            while not flag.exists():
                time.sleep(0.01)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_stuck)
        killer.start()
        verdicts = pool.verify_batch(["\\boxed{1}", HANG + str(flag), "\\boxed{2}"], ["1", "1", "2"])
        killer.join()
        assert [v.status for v in verdicts] == ["correct", "error", "correct"]
        assert "worker process died" in verdicts[1].message and "-9" in verdicts[1].message
        assert pool.errors == 1 and pool.worker_restarts == 1 and pool.worker_pids[0] != pid


def test_idle_worker_killed_between_batches_is_replaced_silently():
    with VerifierPool(num_workers=2, timeout_s=30) as pool:
        assert pool.verify_batch(["\\boxed{1}"], ["1"])[0].correct
        pid = pool.worker_pids[0]
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.01)
        verdicts = pool.verify_batch(["\\boxed{2}"] * 6, ["2"] * 6)
        assert all(v.correct for v in verdicts)
        assert pool.worker_restarts == 1 and pool.errors == 0


def test_judge_exception_is_an_error_with_its_message():
    with VerifierPool(num_workers=1, timeout_s=30, verify_fn=verify_or_raise) as pool:
        verdicts = pool.verify_batch(["\\boxed{1}", "raise", "\\boxed{2}"], ["1", "1", "2"])
        assert [v.status for v in verdicts] == ["correct", "error", "correct"]
        assert verdicts[1].message == "ValueError: judge exploded on purpose"
        assert pool.errors == 1 and pool.worker_restarts == 0


def test_pathological_batch_completes_with_normal_items_right():
    bad = list(pathological_items().values())
    responses, golds, finished, expected = make_batch(40, seed=3)
    with VerifierPool(num_workers=2, timeout_s=10) as pool:
        verdicts = pool.verify_batch(bad + responses, ["1"] * len(bad) + golds, [True] * len(bad) + finished)
    assert all(not v.correct and v.status in ("wrong", "no_answer", "timeout", "error") for v in verdicts[:len(bad)])
    assert [v.status for v in verdicts[len(bad):]] == expected


def test_pool_after_torch_threads_in_the_caller():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    assert float((torch.ones(256, 256) @ torch.ones(256, 256))[0, 0]) == 256.0  # starts torch's thread pool
    with VerifierPool(num_workers=1, timeout_s=30) as pool:
        assert pool.verify_batch(["\\boxed{\\frac{1}{2}}"], ["0.5"])[0].correct


def test_bad_arguments():
    with pytest.raises(ValueError, match="fork"):
        VerifierPool(1, 1.0, start_method="fork")
    with pytest.raises(ValueError, match="num_workers"):
        VerifierPool(0, 1.0)
    with VerifierPool(1, 5.0) as pool:
        with pytest.raises(ValueError, match="lengths differ"):
            pool.verify_batch(["a"], ["a", "b"])
        with pytest.raises(TypeError, match="item 0"):
            pool.verify_batch([None], ["1"])
    with pytest.raises(RuntimeError, match="closed"):
        pool.verify_batch(["a"], ["a"])


def test_a_process_that_exits_without_closing_its_pool_does_not_hang():
    """Workers ignore SIGTERM (a trainer's stop signal is not for them), which multiprocessing's exit handler
    sends to daemon children before joining them: a run ending in an error left the process hanging there."""
    import subprocess
    import sys

    script = ("from oreal_mega.verifier import VerifierPool\n"
              "pool = VerifierPool(2, 5.0)\n"
              "assert [v.status for v in pool.verify_batch(['\\\\boxed{2}'], ['2'])] == ['correct']\n"
              "raise SystemExit(3)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
