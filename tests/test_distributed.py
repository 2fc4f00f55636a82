"""Workers die with their launcher: a kill of torchrun's process group leaves no worker writing."""
import os
from contextlib import suppress
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from oreal_mega.testing.launch import _free_port

ROOT = Path(__file__).parents[1]
WORKER = ROOT / "tests" / "workers" / "bring_up_then_wait.py"


@pytest.mark.slow
def test_killing_torchruns_process_group_kills_its_workers():
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
         str(WORKER)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})  # this checkout's package
    workers = []
    try:
        up = [launcher.stdout.readline() for _ in range(2)]
        assert all(line.startswith("worker ") and line.endswith(" up\n") for line in up), up
        workers = psutil.Process(launcher.pid).children()
        assert sorted(w.pid for w in workers) == sorted(int(line.split()[1]) for line in up)
        # what torchrun does that makes a group kill miss them
        assert all(os.getsid(w.pid) == w.pid != os.getsid(launcher.pid) for w in workers)
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running after torchrun was killed: {alive}"
    finally:
        launcher.kill()
        for worker in workers:
            with suppress(psutil.NoSuchProcess):
                worker.kill()
