"""One writer per run directory: the run's global rank 0 holds `RUN_DIR/run.lock`, a JSON file with
its pid, host and start time, created atomically (O_EXCL). A second run on the directory stops at
once, naming the holder. A lock whose process is gone (this host only: its pid is dead, a zombie,
or now belongs to a process started after the lock) is taken over with a log line; a lock from
another host cannot be checked and is refused. The lock is released by `release()`, or else when the
process exits (also by an exception); a killed process leaves it stale."""
import atexit
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

import psutil

from oreal_mega.errors import UserError

LOCK_FILE = "run.lock"


def _alive(pid: int, started: str) -> bool:
    """Whether process `pid` of this host still is the one that wrote a lock at `started`."""
    try:
        process = psutil.Process(pid)
        created = process.create_time()
        zombie = process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process
        return True
    return not zombie and created <= datetime.fromisoformat(started).timestamp() + 1.0


class RunLock:
    """`with RunLock(run_dir):` or `acquire()` / `release()`, on global rank 0 only."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Create the lock, or raise UserError naming the live holder; a stale lock is replaced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(2):  # the second try follows the removal of a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._remove_stale(me["host"])
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            atexit.register(self.release)
            return
        raise UserError(f"{self.path}: another run took the lock while this one was replacing a stale one")

    def _remove_stale(self, host: str) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, holder_host, started = int(holder["pid"]), str(holder["host"]), str(holder["started"])
            datetime.fromisoformat(started)
        except FileNotFoundError:
            return  # released meanwhile
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{self.path}: unreadable run lock ({type(err).__name__}: {err}); delete it "
                            f"if no run is using {self.path.parent}") from None
        who = f"pid {pid} on {holder_host}, started {started}"
        if holder_host != host:
            raise UserError(f"{self.path.parent} is in use by another run ({who}; lock {self.path}); its "
                            f"liveness cannot be checked from {host}: delete the lock if that run is gone")
        if _alive(pid, started):
            raise UserError(f"{self.path.parent} is in use by another run ({who}; lock {self.path})")
        print(f"taking over the run lock {self.path} of a run that is gone ({who})", file=sys.stderr,
              flush=True)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            atexit.unregister(self.release)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(run_dir: str | Path) -> RunLock:
    """Collective: global rank 0 takes `run_dir`'s lock; when it cannot, every rank raises the
    UserError, so that none goes on into a collective that rank 0 has left."""
    import torch.distributed as dist

    lock, problem = RunLock(run_dir), [None]
    if dist.get_rank() == 0:
        try:
            lock.acquire()
        except UserError as err:
            problem = [str(err)]
    dist.broadcast_object_list(problem, src=0)
    if problem[0] is not None:
        raise UserError(problem[0])
    return lock
