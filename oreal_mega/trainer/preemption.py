"""Stopping a run early without losing its steps: on SIGTERM or SIGUSR1 (a scheduler's preemption or
time-limit warning, `scancel --signal=USR1`, or torchrun passing either on), and before a step that
would not end, with its checkpoint, before `train.time_limit` or the Slurm job's end time, the run
saves its last finished step and exits with status 0 (README "Reliability").

Every rank asks `StopRequests.agreed` before every step; one all-reduce makes the answer the same
everywhere, so a signal that reached only some ranks, or the ranks at different moments, stops them
all at the same step boundary and they save together. The time decision is rank 0's (its clock, its
step and save times), carried by the same all-reduce. The signal handler only records the signal: a
second one changes nothing (the checkpoint is written atomically anyway). Importing it does not import
torch (the config check uses `time_limit_seconds`)."""
import os
import re
import signal
import time
from typing import TYPE_CHECKING

import psutil

from oreal_mega.distributed import STOP_SIGNALS
from oreal_mega.errors import UserError

if TYPE_CHECKING:
    import torch

EXIT_MARGIN_S = 60.0  # left free after the last save for the run's exit (engine, process groups) and clock noise
_DURATION = re.compile(r"(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)")


def time_limit_seconds(value: float | str | None, key: str = "train.time_limit") -> float | None:
    """`value` in seconds: a number of seconds, "H:MM:SS" or "D-HH:MM:SS" (Slurm's --time forms); None: no
    limit. Raises UserError naming `key` for anything else."""
    if value is None:
        return None
    seconds = value
    if isinstance(value, str) and not value.strip().replace(".", "", 1).isdigit():
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise UserError(f"{key}: {value!r} is not a number of seconds, H:MM:SS or D-HH:MM:SS")
        days, hours, minutes, secs = (int(group or 0) for group in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    seconds = float(seconds)
    if not 0 < seconds < float("inf"):
        raise UserError(f"{key}: {value!r} is not a positive duration")
    return seconds


def run_deadline(time_limit_s: float | None, started: float, environ=os.environ) -> float | None:
    """The UNIX time the run must be over by: `started` + the time limit, or the Slurm job's end time
    (SLURM_JOB_END_TIME, a UNIX time Slurm exports into the job's environment), whichever is first."""
    deadlines = [] if time_limit_s is None else [started + time_limit_s]
    slurm_end = environ.get("SLURM_JOB_END_TIME", "")
    if slurm_end.isdigit() and int(slurm_end) > 0:
        deadlines.append(float(slurm_end))
    return min(deadlines, default=None)


def out_of_time(now: float, deadline: float | None, step_seconds: float, save_seconds: float | None,
                margin_s: float = EXIT_MARGIN_S) -> bool:
    """Whether one more step and its checkpoint (`save_seconds`; the step's time when no save was measured
    yet) would end later than `margin_s` before `deadline`. False until a step was measured."""
    if deadline is None or step_seconds <= 0:
        return False
    return now + step_seconds + (step_seconds if save_seconds is None else save_seconds) + margin_s > deadline


class StopRequests:
    """The stop signal this process received, and the longest step and save of the run (rank 0's decide the
    time limit). Construct it in the main thread: it installs the SIGTERM / SIGUSR1 handlers."""

    def __init__(self, time_limit: float | str | None):
        self.received = 0  # the first stop signal's number (0: none)
        self.step_seconds = 0.0  # the longest step of this run, its save left out
        self.save_seconds: float | None = None  # the longest save of this run
        self.deadline = run_deadline(time_limit_seconds(time_limit), psutil.Process().create_time())
        if self.deadline is not None and os.environ.get("RANK", "0") == "0":
            print(f"time limit: {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(self.deadline))} "
                  "(train.time_limit or SLURM_JOB_END_TIME)", flush=True)
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self._record)
            signal.siginterrupt(stop_signal, False)  # system calls in C code (gloo, NCCL) resume after it

    def _record(self, signum, frame) -> None:
        self.received = self.received or signum

    def measured(self, step_seconds: float, save_seconds: float | None) -> None:
        """A step took `step_seconds` besides its save, which took `save_seconds` (None: it saved nothing)."""
        self.step_seconds = max(self.step_seconds, step_seconds)
        if save_seconds is not None:
            self.save_seconds = max(self.save_seconds or 0.0, save_seconds)

    def agreed(self, device: "torch.device") -> str | None:
        """Collective, before every step: why the run stops here (the same on every rank), or None."""
        import torch
        import torch.distributed as dist

        late = dist.get_rank() == 0 and out_of_time(time.time(), self.deadline, self.step_seconds, self.save_seconds)
        flags = torch.tensor([self.received, int(late)], dtype=torch.int64, device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        signum, late = flags.tolist()
        if signum:
            return f"{signal.Signals(signum).name} received"
        if late:
            return (f"the next step and its checkpoint would not end {EXIT_MARGIN_S:.0f} s before the time limit "
                    "(train.time_limit or SLURM_JOB_END_TIME)")
        return None


def stop_early(checkpointer, step: int, last_saved: int, reason: str, is_main: bool) -> None:
    """Collective, when `agreed` gave `reason` before `step`: save step - 1 through the Checkpointer unless
    it is saved already (or is no step: nothing ran), and say so on rank 0."""
    began = time.perf_counter()
    if last_saved < step - 1:
        saved = f"checkpoint {checkpointer.save(step - 1)} written in {time.perf_counter() - began:.1f} s"
    else:
        latest = checkpointer.latest()
        saved = f"checkpoint {latest} already written" if latest else "no step ran, nothing to save"
    if is_main:
        print(f"stopping before step {step} ({reason}): {saved}; the same command resumes the run", flush=True)
