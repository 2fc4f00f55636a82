"""The Checkpointer: training checkpoints for exact resume, and periodic HF exports.

Every rank writes its own shard of models, optimizers, schedulers and RNG states into
`step_NNNNNN.tmp/`; rank 0 then writes a manifest (file sizes) and renames the directory, so a
directory without `.tmp` is complete; a shard that cannot be written (a full disk) stops the run
with an error on every rank and the partial directory is removed. On resume, the newest directory
whose manifest matches its files and whose shards every rank can read (zip CRCs, unpickling) is
used; a corrupt or partial one is skipped, by every rank, with a warning naming the file, and the
one before it is tried. The data position needs no saving: the prompt order is a function of
(seed, step). The RL trainer also writes the policy as a layout-independent model checkpoint in
`policy/` (see weights/model_checkpoint.py), which `oreal-mega convert --to hf` turns into an HF
directory."""
import json
import multiprocessing
import random
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from multiprocessing.managers import SyncManager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from oreal_mega.distributed import as_helper_process
from oreal_mega.errors import UserError

MANIFEST = "manifest.json"


class CheckpointError(UserError):
    """A checkpoint could not be written, or no checkpoint of a run can be resumed from. Not a bug: the run
    directory or its disk is at fault and the message names the file and what to do, so the command line
    prints it as one line, once, like any UserError. Every rank raises it alike (they agree first)."""


def _rank_file(directory: Path, rank: int) -> Path:
    return directory / f"rank_{rank:05d}.pt"


def _rng_state() -> dict:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def _parameters(chunks) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": p for i, chunk in enumerate(chunks) for name, p in chunk.named_parameters()}


def _distributed_parts(optimizer) -> list:
    """The megatron distributed (ZeRO-1) optimizers inside `optimizer`, chained or not."""
    return [o for o in getattr(optimizer, "chained_optimizers", [optimizer])
            if hasattr(o, "get_parameter_state_dp_reshardable")]


def _optimizer_state(optimizer) -> dict:
    """`state_dict()`, plus this rank's shard of every distributed optimizer's fp32 master weights and
    Adam moments, which its state_dict() leaves out. Rank files are reloaded by the same layout."""
    parts = _distributed_parts(optimizer)
    if parts and not all(part.optimizer.state for part in parts):
        return {"never_stepped": True}  # megatron cannot state_dict() it yet; there is nothing to keep
    state = {"optimizer": optimizer.state_dict()}
    if parts:
        state["parameter_shards"] = [part.get_parameter_state_dp_reshardable() for part in parts]
    return state


def _load_optimizer_state(optimizer, state: dict) -> None:
    """Call after the model parameters are restored."""
    if state.get("never_stepped"):
        optimizer.reload_model_params()  # its fp32 master copies come from the restored parameters
        return
    optimizer.load_state_dict(state["optimizer"])
    for part, shard in zip(_distributed_parts(optimizer), state.get("parameter_shards", [])):
        for key, by_dtype in shard.items():
            if isinstance(key, int):  # a grad buffer: dtype → buckets → per-parameter dicts
                for buckets in by_dtype.values():
                    for bucket in buckets:
                        for entry in bucket:
                            entry.setdefault("padding", False)  # the loader expects the flag
        with torch.no_grad():  # it copies into the fp32 master parameters in place
            part.load_parameter_state_from_dp_reshardable(shard)
        for param_state in part.optimizer.state.values():
            if torch.is_tensor(param_state.get("step")):
                # megatron's load gives every parameter the same `step` tensor; torch's Adam then
                # increments it once per parameter per step, which wrecks the bias correction
                param_state["step"] = param_state["step"].clone()


def save(root: Path, step: int, models: dict, optimizers: dict, extra: dict, keep_last: int,
         write_more=None) -> Path:
    """Collective. `models`: name → chunks; `optimizers`: name → (optimizer, scheduler);
    `write_more(directory)`, also collective, adds files before the checkpoint is sealed. Raises
    CheckpointError on every rank when a rank cannot write its shard."""
    rank, world = dist.get_rank(), dist.get_world_size()
    final = root / f"step_{step:06d}"
    partial = root / f"step_{step:06d}.tmp"
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    dist.barrier()
    shard = {
        "models": {name: {k: p.detach().cpu() for k, p in _parameters(chunks).items()}
                   for name, chunks in models.items()},
        "optimizers": {name: {**_optimizer_state(opt), "scheduler": sched.state_dict()}
                       for name, (opt, sched) in optimizers.items()},
        "rng": _rng_state(),
        "extra": extra,
    }
    try:
        torch.save(shard, _rank_file(partial, rank))
        problem = None
    except Exception as err:  # a full disk: OSError, or torch's RuntimeError from its zip writer
        problem = f"rank {rank} could not write {_rank_file(partial, rank).name}: {type(err).__name__}: {err}"
    problems = _every_rank(problem)
    if problems:
        if rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
        dist.barrier()  # no rank stops before the partial directory is gone
        previous = complete_checkpoints(root)
        raise CheckpointError(f"the checkpoint of step {step} could not be written to {partial} "
                              f"({'; '.join(problems)}); "
                              + (f"the previous checkpoint {previous[-1]} is untouched" if previous
                                 else "there is no earlier checkpoint"))
    if write_more is not None:
        _dist_checkpointing_server_dies_with_us()
        write_more(partial)
    dist.barrier()
    if rank == 0:
        files = {f.name: f.stat().st_size for f in sorted(partial.glob("rank_*.pt"))}
        (partial / MANIFEST).write_text(json.dumps({"step": step, "world_size": world, "files": files}))
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        for old in complete_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def _every_rank(problem: str | None) -> list[str]:
    """Collective: the problems of all ranks (None: none), so that every rank decides alike."""
    problems = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    return [p for p in problems if p is not None]


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoint directories, oldest first (by step)."""
    return sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))


def _problem(directory: Path, world: int) -> str | None:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return "no manifest (interrupted save)"
    try:
        info = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return "unreadable manifest"
    if info.get("world_size") != world:
        return f"saved by {info.get('world_size')} ranks, this run has {world}"
    for name, size in info["files"].items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {size}"
    return None


def valid_checkpoints(root: Path) -> Iterator[Path]:
    """Complete checkpoints whose manifest matches their files, newest first; the others are named
    in a warning (on rank 0)."""
    world = dist.get_world_size()
    for directory in reversed(complete_checkpoints(root)):
        problem = _problem(directory, world)
        if problem is None:
            yield directory
        elif dist.get_rank() == 0:
            warnings.warn(f"skipping checkpoint {directory}: {problem}")


def latest_valid(root: Path) -> Path | None:
    """Newest checkpoint whose manifest matches its files; skipped ones are named in a warning."""
    return next(valid_checkpoints(root), None)


def _read(directory: Path) -> dict:
    """This rank's shard of `directory`. Every record's CRC is checked first (torch.load does not:
    bytes flipped inside tensor data would load silently); raises CheckpointError naming the file."""
    path = _rank_file(directory, dist.get_rank())
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad} fails its CRC check")
        # CPU storages torch.load reads from a file cannot be resized, and the optimizer state adopts them:
        # clone them, so that Parked (model.offload_token_rm) can free them (it resizes storages to 0)
        return torch.load(path, weights_only=False,
                          map_location=lambda storage, location: storage.clone() if location == "cpu" else None)
    except Exception as err:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {type(err).__name__}: {err}") from err


def _restore(directory: Path, shard: dict, models: dict, optimizers: dict) -> dict:
    for name, chunks in models.items():
        params = _parameters(chunks)
        saved = shard["models"][name]
        if set(saved) != set(params):
            raise RuntimeError(f"checkpoint {directory}: model '{name}' parameters do not match this "
                               f"model (layout or architecture changed?)")
        with torch.no_grad():
            for key, param in params.items():
                param.copy_(saved[key])
    for name, (opt, sched) in optimizers.items():
        _load_optimizer_state(opt, shard["optimizers"][name])
        sched.load_state_dict(shard["optimizers"][name]["scheduler"])
    _set_rng_state(shard["rng"])
    return shard["extra"]


def load(directory: Path, models: dict, optimizers: dict) -> dict:
    """Restore this rank's shard into `models` / `optimizers` (as in `save`); returns `extra`."""
    return _restore(directory, _read(directory), models, optimizers)


def _dist_checkpointing_server_dies_with_us() -> None:
    """megatron's dist_checkpointing save (the RL trainer's `write_more`: the policy) starts a
    multiprocessing Manager server on first use and keeps it for the life of the process. After a
    SIGKILL of the trainer that server lived on (holding the run's stdout and stderr open); started
    here, the kernel kills it with its parent, and it ignores the stop signals that a launcher sends
    to every process (the rank still needs it to save before it stops)."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if filesystem_async._results_queue is None:
        manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
        manager.start(as_helper_process)
        filesystem_async._results_queue = manager.Queue()  # the proxy keeps the manager alive


class Checkpointer:
    """Find / validate / resume, save every `save_every` steps (and at the last step) keeping the
    newest `keep_last`, and export an HF directory every `export_every` steps. `save(step)` saves at
    once: a run that stops early (SIGTERM / SIGUSR1, train.time_limit) saves its last step with it.

    `models` / `optimizers` as `save` takes them; `write_more(directory)` adds files to a checkpoint
    before it is sealed; `resident()` is a context in which every saved model is on its device;
    `export(directory)` writes an HF directory. All calls are collective."""

    def __init__(self, run_dir: Path, models: dict, optimizers: dict, *, save_every: int, keep_last: int,
                 total_steps: int, write_more: Callable | None = None, resident: Callable = nullcontext,
                 export: Callable | None = None, export_every: int = 0):
        self.root, self.run_dir = run_dir / "checkpoints", run_dir
        self.models, self.optimizers = models, optimizers
        self.save_every, self.keep_last, self.total_steps = save_every, keep_last, total_steps
        self.write_more, self.resident = write_more, resident
        self.export, self.export_every = export, export_every

    def latest(self) -> Path | None:
        return latest_valid(self.root)

    def resume(self) -> int:
        """Restore the newest checkpoint that every rank can read (before any model is parked);
        returns the first step to run (0 for a fresh run). Nothing is restored from a checkpoint
        that some rank rejects: it is named in a warning and the one before it is tried. Raises
        CheckpointError when there are checkpoints but none can be used."""
        for directory in valid_checkpoints(self.root):
            try:
                shard, problem = _read(directory), None
            except CheckpointError as err:
                shard, problem = None, str(err)
            problems = _every_rank(problem)
            if not problems:
                start = _restore(directory, shard, self.models, self.optimizers)["step"] + 1
                if dist.get_rank() == 0:
                    print(f"resumed from {directory} at step {start}", flush=True)
                return start
            if dist.get_rank() == 0:
                warnings.warn(f"skipping checkpoint {directory}: {'; '.join(problems)}")
        if complete_checkpoints(self.root):
            raise CheckpointError(f"no checkpoint in {self.root} can be resumed from (the warnings above "
                                  f"say why); move {self.root} away to start the run from step 0")
        return 0

    def save(self, step: int) -> Path:
        """A checkpoint of `step` now, whatever `save_every` says (a run stopping early: trainer/preemption.py)."""
        with self.resident():
            return save(self.root, step, self.models, self.optimizers, {"step": step}, self.keep_last,
                        self.write_more)

    def maybe_save(self, step: int) -> bool:
        """The checkpoint of `step` when `save_every` asks for it, the HF export when `export_every` does;
        returns whether a checkpoint was written."""
        done = step + 1
        due = bool(self.save_every) and (done % self.save_every == 0 or done == self.total_steps)
        if due:
            self.save(step)
        if self.export is not None and self.export_every and done % self.export_every == 0:
            self.export(self.run_dir / "hf" / f"step_{done:06d}")
        return due
