"""Process-group bring-up under torchrun (or a single plain process): NCCL on GPUs, gloo on CPU,
then megatron-core's tensor / pipeline / data parallel groups. Importing it does not import torch."""
import ctypes
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oreal_mega.errors import UserError

if TYPE_CHECKING:
    import torch

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # "save and stop" for `train` and `sft` (trainer/preemption.py)


@dataclass
class ParallelConfig:
    tp: int = 1  # tensor-parallel size
    pp: int = 1  # pipeline-parallel size
    vpp: int | None = None  # virtual pipeline stages per rank (interleaved schedule); None = off
    seed: int = 1234


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    local_rank: int
    tp: int
    pp: int
    dp: int
    vpp: int | None
    device: "torch.device"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_layout(world_size: int, parallel: ParallelConfig, num_layers: int | None = None) -> None:
    """Fail before any work when the requested layout cannot be built."""
    if world_size % (parallel.tp * parallel.pp):
        raise UserError(f"world size {world_size} is not divisible by parallel.tp × parallel.pp "
                        f"= {parallel.tp} × {parallel.pp}")
    if parallel.vpp is not None and parallel.pp < 2:
        raise UserError(f"parallel.vpp={parallel.vpp} needs parallel.pp ≥ 2")
    stages = parallel.pp * (parallel.vpp or 1)
    if num_layers is not None and num_layers % stages:
        raise UserError(f"{num_layers} layers do not split evenly into parallel.pp × parallel.vpp "
                        f"= {stages} pipeline stages")


def die_with_launcher() -> None:
    """Under torchrun, have the kernel kill this worker when its parent, the torchrun agent, dies
    (Linux; elsewhere a no-op). torchrun starts each worker in a session of its own, so a kill of
    the launcher's process group misses the workers, which would go on writing to the run."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()  # (a launcher that died before this line is not seen: torchrun may be pid 1)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != launcher:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def as_helper_process() -> None:
    """First thing in a helper process that a rank starts and owns (a verifier worker, the checkpoint
    writer's Manager server): die with that rank (Linux PDEATHSIG), and ignore SIGTERM / SIGUSR1, which
    torchrun sends to each rank's whole process group and Slurm to every process of the job: the rank
    finishes its step and saves before it stops (trainer/preemption.py), and needs its helpers till then."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")  # the workspace settings cuBLAS is reproducible with


def make_deterministic() -> None:
    """`train.deterministic`: the learner's CUDA passes repeat bit for bit on the same machine and
    software, at some speed (NOT run on a GPU yet). Call it before any CUDA work: cuBLAS reads
    CUBLAS_WORKSPACE_CONFIG when its first handle is created, NCCL reads NCCL_ALGO when its first
    communicator is; an NCCL_ALGO set by the user is kept. Then torch's deterministic algorithms,
    process-wide (an in-process vLLM engine's torch ops included), which also make CUDA `index_add` /
    `scatter_add` (our `segment_sum`) sort-based instead of atomic, and through them megatron's
    `deterministic_mode` (models/builder.py) and flash-attn's deterministic backward
    (models/attention.py). An op with no deterministic implementation warns, naming itself, instead
    of stopping the run."""
    import torch

    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in _DETERMINISTIC_CUBLAS:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _DETERMINISTIC_CUBLAS[0]
    # megatron-LM's deterministic mode insists on an NCCL algorithm chosen by hand, other than NVLS
    os.environ.setdefault("NCCL_ALGO", "Ring")
    torch.use_deterministic_algorithms(True, warn_only=True)


def init_distributed(parallel: ParallelConfig, num_layers: int | None = None,
                     deterministic: bool = False) -> Topology:
    """Join the torchrun job (or start a world of one) and build megatron's parallel groups;
    `deterministic`: `make_deterministic()` first."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state, tensor_parallel

    die_with_launcher()
    if deterministic:
        make_deterministic()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    check_layout(world_size, parallel, num_layers)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        from oreal_mega import cpu_patches

        cpu_patches.apply()
        device = torch.device("cpu")
    if not dist.is_initialized():
        # a world of one outside torchrun gets a private address (not exported to child processes)
        init_method = None if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{_free_port()}"
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method=init_method,
                                rank=rank, world_size=world_size)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=parallel.tp,
            pipeline_model_parallel_size=parallel.pp,
            virtual_pipeline_model_parallel_size=parallel.vpp,
        )
    tensor_parallel.model_parallel_cuda_manual_seed(parallel.seed)
    torch.manual_seed(parallel.seed)
    return Topology(rank=rank, world_size=world_size, local_rank=local_rank, tp=parallel.tp,
                    pp=parallel.pp, dp=world_size // (parallel.tp * parallel.pp),
                    vpp=parallel.vpp, device=device)


def shutdown() -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():  # (an in-process vLLM engine's shutdown may already have ended it)
        dist.destroy_process_group()
