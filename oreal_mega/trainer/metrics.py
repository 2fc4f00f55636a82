"""Per-step metrics: always JSONL, TensorBoard by default, wandb when configured; a progress line
with the step time and ETA. Only global rank 0 writes. A resumed run first drops what an earlier
run logged from its resume step on, so every step is recorded once."""
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from oreal_mega.models.flops import sync


class MetricsLog:
    def __init__(self, run_dir: Path, total_steps: int, tensorboard: bool, wandb_project: str | None,
                 config: dict, enabled: bool, start_step: int | None = None):
        """`start_step`: the step this run starts at (0, or the resumed checkpoint's step + 1); records
        of that step and later, logged by an earlier run of this directory, are removed (JSONL) or
        purged (TensorBoard). None keeps everything and appends."""
        self.enabled, self.total_steps = enabled, total_steps
        self.started = time.perf_counter()
        self.steps_timed = 0
        self.writer = self.wandb = None
        if not enabled:
            return
        if start_step is not None:
            _drop_records_from(run_dir / "metrics.jsonl", start_step)
        self.jsonl = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step)
        if wandb_project:
            import wandb

            self.wandb = wandb.init(project=wandb_project, config=config, dir=str(run_dir))

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            if self.writer and isinstance(value, (int, float)) and key != "step":
                self.writer.add_scalar(key, value, step)
        if self.writer:
            self.writer.flush()
        if self.wandb:
            self.wandb.log(record, step=step)

    def progress(self, step: int, step_seconds: float, summary: str) -> None:
        """One line per step: step k/N, its time, the mean so far and the ETA."""
        self.steps_timed += 1
        mean = (time.perf_counter() - self.started) / self.steps_timed
        eta = mean * (self.total_steps - step - 1)
        if self.enabled:
            print(f"step {step + 1}/{self.total_steps} {step_seconds:.1f}s (ETA {eta / 60:.1f} min) {summary}",
                  flush=True)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.writer:
                self.writer.close()
            if self.wandb:
                self.wandb.finish()


def _drop_records_from(path: Path, start_step: int) -> None:
    """Rewrite `path` (atomically) with only the records of steps before `start_step`; a line cut
    short by a killed run is dropped too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if step < start_step:
            kept.append(line + "\n")
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(kept), encoding="utf-8")
    os.replace(partial, path)


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def sum_metric(outputs: list[dict], key: str, reduce: str = "sum") -> float:
    """Collective: a per-micro-batch metric from the last pipeline stage, summed (or maxed) over
    micro-batches and data-parallel ranks, counted once per tensor-parallel group."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    values = [torch.as_tensor(m[key], dtype=torch.float64).cpu() for m in outputs if key in m]
    counts = ps.get_tensor_model_parallel_rank() == 0 and values
    if reduce == "max":
        local = max(v.item() for v in values) if counts else float("-inf")
        op = dist.ReduceOp.MAX
    else:
        local = sum(v.item() for v in values) if counts else 0.0
        op = dist.ReduceOp.SUM
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    total = torch.tensor([local], dtype=torch.float64, device=device)
    dist.all_reduce(total, op=op)
    return total.item()


class PhaseTimes:
    """Wall seconds of a step's phases, as `time_<phase>` metrics:
    `with times.phase("sync"): ...`. The clock is read after waiting for the work queued on `device`
    (CUDA kernels run asynchronously), so a phase's seconds are its work's, not its launches'."""

    def __init__(self, device: torch.device):
        self.device = device
        sync(device)
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        sync(self.device)
        began = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds[f"time_{name}"] = time.perf_counter() - began

    def total(self) -> float:
        sync(self.device)
        return time.perf_counter() - self.started
