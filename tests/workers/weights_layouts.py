"""torchrun worker: HF checkpoints ⇄ megatron chunks in one TP/PP/VPP layout, for several models
per launch (tests/test_weights.py). For each HF directory given: load it, save the
logits of a fixed packed batch, and optionally export it to HF, save a megatron checkpoint of
it, or load a megatron checkpoint saved at another layout and save those logits too."""
import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
from oreal_mega.models.builder import build_model
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.models.pipeline import forward_backward, pack
from oreal_mega.weights.model_checkpoint import load_model_checkpoint, save_model_checkpoint
from oreal_mega.weights.hf_export import export_hf
from oreal_mega.weights.hf_load import load_hf_weights

SEQUENCES = [[5, 17, 300, 2, 44, 9, 120, 7, 3], [1, 250, 11, 12, 480, 33, 6, 6, 90, 510, 4, 77, 0, 8]]


def logits_of(chunks, arch) -> torch.Tensor | None:
    """Full-vocab logits of SEQUENCES, concatenated (on the last pipeline stage)."""
    tp_group = ps.get_tensor_model_parallel_group()

    tp = ps.get_tensor_model_parallel_world_size()
    shard_rows = arch.padded_vocab_size(tp) // tp

    def loss_fn(hidden, model, mb):
        local = hidden @ model.lm_head_weight().t()  # the last shard may lack padding rows
        local = torch.nn.functional.pad(local, (0, shard_rows - local.shape[1]))
        shards = [torch.empty_like(local) for _ in range(tp)]
        dist.all_gather(shards, local.contiguous(), group=tp_group)
        logits = torch.cat(shards, dim=1)[: mb.num_real_tokens, : arch.vocab_size]
        return local.sum() * 0, {"logits": logits}

    # one micro-batch per sequence: the interleaved (VPP) schedule needs at least PP of them
    length = max(map(len, SEQUENCES)) + 3
    batches = [pack([torch.tensor(s)], length) for s in SEQUENCES]
    metrics = forward_backward(chunks, batches, loss_fn, forward_only=True)
    return torch.cat([m["logits"] for m in metrics]) if metrics else None


def save_logits(logits, path: Path) -> None:
    if logits is not None and ps.get_tensor_model_parallel_rank() == 0:
        torch.save(logits, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--vpp", type=int, default=None)
    p.add_argument("--models", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--export", action="store_true")
    p.add_argument("--save-mcore", action="store_true")
    p.add_argument("--load-mcore", type=Path, help="directory holding NAME-mcore checkpoints")
    args = p.parse_args()
    init_distributed(ParallelConfig(tp=args.tp, pp=args.pp, vpp=args.vpp))
    for model_dir in args.models:
        name = model_dir.name
        arch = parse_arch(read_hf_config(model_dir))
        chunks = build_model(arch)
        load_hf_weights(chunks, arch, model_dir)
        save_logits(logits_of(chunks, arch), args.out / f"{name}-hf-logits.pt")
        if args.export:
            export_hf(chunks, arch, args.out / f"{name}-export", model_dir)
        if args.save_mcore:
            save_model_checkpoint(chunks, args.out / f"{name}-mcore", model_dir)
        if args.load_mcore:
            chunks = build_model(arch)
            load_model_checkpoint(chunks, arch, args.load_mcore / f"{name}-mcore")
            save_logits(logits_of(chunks, arch), args.out / f"{name}-mcore-logits.pt")
    dist.barrier()
    shutdown()


if __name__ == "__main__":
    main()
