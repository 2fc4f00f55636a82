"""`python -m oreal_mega.testing.faults [FAULT ...] CONFIG [key=value ...]`: `oreal-mega train` with
faults injected from outside the trainer, for tests (run it under torchrun like `train`).

--nan-grads-at STEP,...  at those steps the policy's gradients are overwritten with NaN right before
                         the non-finite guard looks at them (the guard's skip / stop logic).
--kill-at PHASE:STEP     SIGKILL of the whole run, the torchrun agent and every worker, in PHASE of
                         STEP: once every rank has entered `rollout`, `update` (the policy update)
                         or `sync` (the weight sync into vLLM); in `checkpoint` once this rank's
                         shard of the step's checkpoint is written, before the checkpoint is sealed.
--sigterm-at PHASE:STEP[:RANK]  SIGTERM once rank 0 has entered PHASE of STEP, sent to the torchrun agent
                         (which passes it on to every rank's process group, as a `kill` of torchrun or
                         Slurm does); with RANK: sent by that rank to itself only, once it has entered
                         the phase (the other ranks learn of it through trainer/preemption.py).
--engine-dies-at STEP    the vLLM engine core dies in the rollout of STEP (its generate call raises
                         vLLM's EngineDeadError).
--disk-full-at STEP      writing this rank's checkpoint shard at STEP fails with ENOSPC once half of
                         it is on disk.

Every fault is installed from outside, by replacing what the trainer calls; the names relied on are
PHASES, StepGuard.finite, VLLMRolloutEngine.generate and .llm, and the checkpointer's torch.save of
its `rank_*.pt` shard."""
import argparse
import errno
import importlib
import inspect
import io
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from oreal_mega.trainer.guards import StepGuard

# phase → (module, class, method): every rank calls the method once per step, with a `step` argument
PHASES = {
    "rollout": ("oreal_mega.trainer.colocated_rollout", "ColocatedRollout", "collect"),
    "update": ("oreal_mega.trainer.learner", "Learner", "_policy_update"),
    "sync": ("oreal_mega.trainer.colocated_rollout", "ColocatedRollout", "load_weights"),
    "checkpoint": ("oreal_mega.trainer.checkpointer", "Checkpointer", "maybe_save"),
}

_running: list[tuple[str, int | None]] = []  # the (phase, step) calls in progress, innermost last
_on_entering: dict[tuple[str, int], Callable[[], None]] = {}  # (phase, step) → what its entry does on this rank


def _tracked(phase: str, method: Callable) -> Callable:
    signature = inspect.signature(method)

    def wrapper(*args, **kwargs):
        step = signature.bind(*args, **kwargs).arguments["step"]
        if (phase, step) in _on_entering:
            _on_entering[phase, step]()
        _running.append((phase, step))
        try:
            return method(*args, **kwargs)
        finally:
            _running.pop()

    return wrapper


def track_phases(on_entering: dict[tuple[str, int], Callable[[], None]] | None = None) -> None:
    """Wrap every PHASES method, so that `in_phase` knows where the run is; entering a (phase, step) of
    `on_entering` first calls its function."""
    _on_entering.update(on_entering or {})
    for phase, (module, cls_name, name) in PHASES.items():
        cls = getattr(importlib.import_module(module), cls_name)
        setattr(cls, name, _tracked(phase, getattr(cls, name)))


def in_phase(phase: str, step: int) -> bool:
    return (phase, step) in _running


def _kill_once_all_arrived() -> None:
    # every rank is in the phase before the kill, as when a whole job is killed there (without the
    # barrier the first rank in could kill rank 0 before it logged the previous step)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    kill_run()


def _sigterm(target: int | None) -> Callable[[], None]:
    """Entering the phase: SIGTERM to the torchrun agent from rank 0 (`target` None), or from rank `target`
    to itself."""
    rank = int(os.environ.get("RANK", "0"))

    def send() -> None:
        if target is None and rank == 0:
            os.kill(os.getppid(), signal.SIGTERM)
        elif target == rank:
            os.kill(os.getpid(), signal.SIGTERM)

    return send


def kill_run() -> None:
    """SIGKILL the torchrun agent (this worker's parent) and this worker. The other workers die with
    the agent (`distributed.die_with_launcher`), the verifier's workers when their pipe closes."""
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def nan_gradients_at(steps: set[int]) -> None:
    """Make the policy's gradients NaN at `steps` (every rank) before StepGuard.finite checks them."""
    check = StepGuard.finite

    def finite(self, outputs, chunks, step, what):
        if what == "policy" and step in steps:
            for chunk in chunks:
                for buffer in chunk.buffers:
                    buffer.grad_data.fill_(float("nan"))
        return check(self, outputs, chunks, step, what)

    StepGuard.finite = finite


def on_shard_write(step: int, write: Callable) -> None:
    """In the checkpoint phase of `step`, this rank's shard (`rank_*.pt`, the first file the
    checkpointer writes) is written by `write(torch_save, obj, path)` instead of torch.save."""
    save = torch.save

    def patched(obj, f, *args, **kwargs):
        if in_phase("checkpoint", step) and isinstance(f, (str, Path)) and Path(f).name.startswith("rank_"):
            return write(save, obj, f)
        return save(obj, f, *args, **kwargs)

    torch.save = patched


def _save_then_kill(save, obj, path) -> None:
    save(obj, path)
    kill_run()


def _half_then_enospc(save, obj, path) -> None:
    buffer = io.BytesIO()
    save(obj, buffer)
    with open(path, "wb") as out:
        out.write(buffer.getbuffer()[: buffer.tell() // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def engine_dies_at(step: int) -> None:
    """From the rollout of `step` on, the engine's vLLM LLM.generate raises EngineDeadError."""
    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine

    generate = VLLMRolloutEngine.generate

    def dying(self, *args, **kwargs):
        if in_phase("rollout", step):
            from vllm.v1.engine.exceptions import EngineDeadError

            def dead(*_, **__):
                raise EngineDeadError()

            self.llm.generate = dead
        return generate(self, *args, **kwargs)

    VLLMRolloutEngine.generate = dying


def _phase_step(text: str) -> tuple[str, int]:
    phase, _, step = text.partition(":")
    if phase not in PHASES or not step.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not PHASE:STEP with PHASE one of {', '.join(PHASES)}")
    return phase, int(step)


def _phase_step_rank(text: str) -> tuple[str, int, int | None]:
    where, _, rank = text.rpartition(":") if text.count(":") == 2 else (text, "", None)
    if rank is not None and not rank.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not PHASE:STEP[:RANK]")
    return (*_phase_step(where), None if rank is None else int(rank))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oreal_mega.testing.faults")
    parser.add_argument("--nan-grads-at", type=lambda text: [int(v) for v in text.split(",")], default=[],
                        metavar="STEP,STEP...")
    parser.add_argument("--kill-at", type=_phase_step, metavar="PHASE:STEP")
    parser.add_argument("--sigterm-at", type=_phase_step_rank, metavar="PHASE:STEP[:RANK]")
    parser.add_argument("--engine-dies-at", type=int, metavar="STEP")
    parser.add_argument("--disk-full-at", type=int, metavar="STEP")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="CONFIG [key=value ...] as for train")
    args = parser.parse_args(argv)
    if (args.kill_at or args.sigterm_at) and "TORCHELASTIC_RUN_ID" not in os.environ:
        sys.exit("--kill-at and --sigterm-at signal this process's parent: run it under torchrun")
    nan_gradients_at(set(args.nan_grads_at))
    if args.kill_at or args.sigterm_at or args.engine_dies_at is not None or args.disk_full_at is not None:
        on_entering = {}
        if args.kill_at and args.kill_at[0] != "checkpoint":
            on_entering[args.kill_at] = _kill_once_all_arrived
        if args.sigterm_at:
            on_entering[args.sigterm_at[:2]] = _sigterm(args.sigterm_at[2])
        track_phases(on_entering)
    if args.kill_at and args.kill_at[0] == "checkpoint":
        on_shard_write(args.kill_at[1], _save_then_kill)
    if args.disk_full_at is not None:
        on_shard_write(args.disk_full_at, _half_then_enospc)
    if args.engine_dies_at is not None:
        engine_dies_at(args.engine_dies_at)
    from oreal_mega.cli import main as cli_main

    cli_main(["train", *args.train_args])


if __name__ == "__main__":
    main()
