"""`oreal-mega convert`: HF checkpoint ⇄ megatron model checkpoint.

    oreal-mega convert --to mcore HF_DIR CKPT_DIR   # HF → megatron checkpoint (loads at any TP/PP)
    oreal-mega convert --to hf CKPT_DIR HF_DIR      # megatron checkpoint → HF directory

With --tp/--pp above 1 the command re-launches itself under torchrun on tp × pp local
processes (each holds only its part of the model). The destination is written atomically.
"""
import os
import subprocess
import sys
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.models.builder import DTYPES


def add_arguments(parser) -> None:
    parser.add_argument("--to", choices=("hf", "mcore"), required=True,
                        help="hf: megatron checkpoint → HF directory; mcore: HF → megatron checkpoint")
    parser.add_argument("src", type=Path, help="source directory")
    parser.add_argument("dst", type=Path, help="destination directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    parser.add_argument("--dtype", choices=sorted(DTYPES),
                        help="weights dtype (default: the source's)")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel processes (default 1)")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel processes (default 1)")
    parser.add_argument("--max-shard-gb", type=float, default=2.0,
                        help="largest HF safetensors shard in GB (--to hf; default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _forwarded_arguments(args) -> list[str]:
    argv = ["--to", args.to, str(args.src), str(args.dst), "--tp", str(args.tp), "--pp", str(args.pp),
            "--max-shard-gb", str(args.max_shard_gb)]
    argv += ["--dtype", args.dtype] if args.dtype else []
    argv += ["--overwrite"] * args.overwrite + ["--no-progress"] * args.no_progress
    return argv


def _relaunch_under_torchrun(args) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.tp * args.pp}", "-m", "oreal_mega", "convert",
           *_forwarded_arguments(args)]
    return subprocess.run(cmd).returncode


def _hf_dtype(hf_dir: Path, config: dict) -> str:
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    if name not in DTYPES:
        raise UserError(f"{hf_dir / 'config.json'}: dtype {name!r} is not one of {sorted(DTYPES)}; "
                        f"pass --dtype")
    return name


def _make_parent(dst: Path) -> None:
    """Create the destination's parent now, so that a destination that cannot be made fails before any work."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a file where a folder has to be
        raise UserError(f"cannot create {dst}: {err.filename} is not a directory") from None
    except OSError as err:
        raise UserError(f"cannot create {dst}: {err.filename}: {err.strerror}") from None
    if not os.access(dst.parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create {dst}: {dst.parent} is not writable")


def run(args) -> int:
    from oreal_mega.models.hf_config import parse_arch, read_hf_config
    from oreal_mega.weights.atomic import check_destination

    if not args.src.is_dir():
        raise UserError(f"{args.src}: no such directory")
    check_destination(args.dst, args.overwrite)
    if args.to == "mcore":
        config = read_hf_config(args.src)
        arch = parse_arch(config, where=str(args.src / "config.json"))
        dtype = args.dtype or _hf_dtype(args.src, config)
    else:
        from oreal_mega.weights.model_checkpoint import read_model_checkpoint

        arch, dtype, _ = read_model_checkpoint(args.src)
    _make_parent(args.dst)
    if "WORLD_SIZE" not in os.environ and args.tp * args.pp > 1:
        return _relaunch_under_torchrun(args)
    return _convert(args, arch, dtype)


def _convert(args, arch, dtype: str) -> int:
    import torch.distributed as dist

    from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
    from oreal_mega.models.builder import build_model

    owns_world = not dist.is_initialized()  # called in-process from a running job: leave it up
    topology = init_distributed(ParallelConfig(tp=args.tp, pp=args.pp), arch.num_layers)
    progress = topology.is_main and not args.no_progress
    try:
        chunks = build_model(arch, dtype)
        if args.to == "mcore":
            from oreal_mega.weights.model_checkpoint import save_model_checkpoint
            from oreal_mega.weights.hf_load import load_hf_weights

            load_hf_weights(chunks, arch, args.src, progress=progress)
            save_model_checkpoint(chunks, args.dst, args.src, overwrite=args.overwrite)
        else:
            from oreal_mega.weights.model_checkpoint import load_model_checkpoint
            from oreal_mega.weights.hf_export import export_hf

            load_model_checkpoint(chunks, arch, args.src)
            export_hf(chunks, arch, args.dst, args.src / "hf", dtype=args.dtype,
                      overwrite=args.overwrite, max_shard_bytes=int(args.max_shard_gb * 1e9),
                      progress=progress)
        if topology.is_main:
            print(f"wrote {args.dst}")
    finally:
        if owns_world:
            shutdown()
    return 0
