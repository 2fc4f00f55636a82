"""torchrun worker: forward+backward of a tiny model in one TP/PP/VPP layout, results saved for
comparison with the single-process reference (tests/test_megatron_layouts.py)."""
import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel

from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
from oreal_mega.models.builder import build_model
from oreal_mega.models.ddp import finalize_grads, wrap_ddp
from oreal_mega.models.hf_config import parse_arch
from oreal_mega.models.pipeline import forward_backward, pack
from oreal_mega.testing.layouts import TINY_CONFIGS, gather_full_grads, load_full_state

SEQ_LENGTHS = [7, 12, 5, 9, 11, 6]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--vpp", type=int, default=None)
    p.add_argument("--micro-batches", type=int, default=3)
    p.add_argument("--state", type=Path, help="full state dict to load (omit to save one)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    arch = parse_arch(TINY_CONFIGS[args.arch])
    topo = init_distributed(ParallelConfig(tp=args.tp, pp=args.pp, vpp=args.vpp, seed=7), arch.num_layers)
    chunks = build_model(arch)
    if args.state is not None:
        load_full_state(chunks, torch.load(args.state), arch.tie_word_embeddings)
    elif topo.rank == 0:
        torch.save({n: p.detach().clone() for n, p in chunks[0].named_parameters()}, args.out / "state.pt")
    chunks = wrap_ddp(chunks)

    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, arch.vocab_size, (n,), generator=gen) for n in SEQ_LENGTHS]
    probes = [torch.randn(n, arch.vocab_size, generator=gen) for n in SEQ_LENGTHS]
    per_mb = len(seqs) // args.micro_batches
    groups = [range(i * per_mb, (i + 1) * per_mb) for i in range(args.micro_batches)]
    length = max(sum(SEQ_LENGTHS[i] for i in g) for g in groups) + 3
    mbs = [pack([seqs[i] for i in g], length, {"probe": [probes[i] for i in g]},
                pad_values={"probe": 0.0}) for g in groups]

    tp_group = ps.get_tensor_model_parallel_group()
    tp_rank = ps.get_tensor_model_parallel_rank()

    def loss_fn(hidden, model, mb):
        # the padded vocab shard (even across ranks), so the logits can be all-gathered
        weight = (model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights
                  else model.output_layer.weight)
        local = tensor_parallel.copy_to_tensor_model_parallel_region(hidden) @ weight.t()  # [T, V_local]
        shards = [torch.empty_like(local) for _ in range(args.tp)]
        dist.all_gather(shards, local.detach(), group=tp_group)
        full = torch.cat(shards, dim=1)[:, : arch.vocab_size]
        v_local = weight.shape[0]
        lo = tp_rank * v_local
        hi = min(lo + v_local, arch.vocab_size)
        probe = mb.fields["probe"]
        loss = (local[:, : hi - lo] * probe[:, lo:hi]).sum()
        # the loss is a sum over vocab shards: add the other shards' parts as constants
        total = loss.detach().clone()
        dist.all_reduce(total, group=tp_group)
        loss = loss + (total - loss.detach())
        return loss, {"logits": full[: mb.num_real_tokens]}

    metrics = forward_backward(chunks, mbs, loss_fn)
    finalize_grads(chunks)
    grads = gather_full_grads(chunks, arch.vocab_size)
    first_dp_tp = ps.get_data_parallel_rank() == 0 and tp_rank == 0
    if first_dp_tp:
        torch.save(grads, args.out / f"grads_pp{ps.get_pipeline_model_parallel_rank()}.pt")
        if metrics:
            torch.save(torch.cat([m["logits"] for m in metrics]), args.out / "logits.pt")
    dist.barrier()
    shutdown()


if __name__ == "__main__":
    main()
