"""One writer per run directory: a live holder refuses a second run, a dead one's lock is taken over."""
import json
import os
import socket
import subprocess
import sys

import pytest

from oreal_mega.errors import UserError
from oreal_mega.trainer.run_lock import LOCK_FILE, RunLock

HOLD = ("import sys, time; from oreal_mega.trainer.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)")


def test_second_run_stops_naming_the_holder_and_a_killed_holders_lock_is_taken_over(tmp_path, capfd):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        info = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (info["pid"], info["host"]) == (holder.pid, socket.gethostname())
        with pytest.raises(UserError) as err:
            RunLock(tmp_path).acquire()
        assert str(err.value) == (f"{tmp_path} is in use by another run (pid {holder.pid} on "
                                  f"{info['host']}, started {info['started']}; lock {tmp_path / LOCK_FILE})")
    finally:
        holder.kill()
        holder.wait()
    capfd.readouterr()
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert f"taking over the run lock {tmp_path / LOCK_FILE} of a run that is gone (pid {holder.pid}" \
            in capfd.readouterr().err
    assert not (tmp_path / LOCK_FILE).exists()  # released on a clean exit


def test_a_reused_pid_is_stale_and_another_hosts_lock_is_refused(tmp_path, capfd):
    lock = tmp_path / LOCK_FILE
    # this process's pid, in a lock written long before this process started: the pid was reused
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2001-01-01T00:00:00+00:00"}))
    with RunLock(tmp_path):
        assert "taking over the run lock" in capfd.readouterr().err
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(UserError, match=r"in use by another run \(pid 1 on elsewhere, started 2026-01-01T00:00:00"
                                        r"\+00:00; lock .*run.lock\); its liveness cannot be checked from .*: "
                                        r"delete the lock if that run is gone"):
        RunLock(tmp_path).acquire()
    lock.write_text("{not json")
    with pytest.raises(UserError, match=r"run.lock: unreadable run lock"):
        RunLock(tmp_path).acquire()
    assert lock.read_text() == "{not json"  # a refused run leaves the lock alone


@pytest.mark.parametrize("end", ["pass", "raise SystemExit(3)", "1 / 0"])
def test_the_lock_goes_when_its_process_exits(tmp_path, end):
    code = (f"from oreal_mega.trainer.run_lock import RunLock; lock = RunLock({str(tmp_path)!r}); lock.acquire(); "
            f"print(lock.path.exists()); {end}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "True\n" and not (tmp_path / LOCK_FILE).exists()
