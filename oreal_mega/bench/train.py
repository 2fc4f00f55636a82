"""Megatron forward+backward throughput: tokens/s and MFU with packed sequences and the fused loss.

Run under torchrun for TP/PP, e.g.
    torchrun --nproc-per-node 2 -m oreal_mega bench train --tp 2
The model comes from an HF config.json (random weights), optionally cut to fewer layers; the batch
is random documents packed into one micro-batch per step; the loss is the fused LM-head loss on
hidden states (no logits tensor). MFU's peak: the card's nominal dense bf16 peak where known (H100/H200:
989 TFLOP/s), otherwise a matmul measured in the same run (printed).
"""
import statistics
import time
from dataclasses import dataclass, replace
from importlib import resources

import torch

from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
from oreal_mega.bench.machine import print_header
from oreal_mega.models.flops import model_flops, peak_flops, sync
from oreal_mega.models.hf_config import parse_arch, read_hf_config

DEFAULT_CONFIG = resources.files("oreal_mega") / "data" / "tiny-qwen2.json"


def add_arguments(parser):
    parser.add_argument("--hf-config", default=str(DEFAULT_CONFIG),
                        help="HF config.json (default: the embedded tiny Qwen2)")
    parser.add_argument("--layers", type=int, help="keep only this many decoder layers")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per step (packed)")
    parser.add_argument("--doc-len", type=int, default=512, help="length of each packed document")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"],
                        default="bfloat16" if torch.cuda.is_available() else "float32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)


@dataclass(frozen=True)
class Throughput:
    seconds: float  # median forward+backward step
    tokens_per_s: float
    mfu: float
    peak: float  # FLOP/s the MFU divides by
    peak_name: str
    docs: int
    steps: int  # timed steps


def measure(chunks, arch, tokens: int, doc_len: int, topo, dtype: str, steps: int, warmup: int,
            tp_group=None) -> Throughput:
    """Median forward+backward(+gradient finalisation) time of `chunks` (built and DDP-wrapped for
    `arch`) on random documents of `doc_len` tokens packed into one `tokens`-token micro-batch,
    with the fused LM-head loss; collective under torchrun."""
    from oreal_mega.kernels import fused_oreal_loss
    from oreal_mega.models.ddp import finalize_grads, zero_grads
    from oreal_mega.models.pipeline import forward_backward, pack

    gen = torch.Generator().manual_seed(0)
    doc_lengths = [min(doc_len, tokens - i) for i in range(0, tokens, doc_len)]
    docs = [torch.randint(0, arch.vocab_size, (n,), generator=gen) for n in doc_lengths]
    labels = [torch.cat([d[1:], torch.tensor([-100])]) for d in docs]
    batch = pack(docs, tokens, {"labels": labels}, pad_values={"labels": -100})
    batch.num_labelled = int((batch.fields["labels"] != -100).sum())  # counted on the host, as the trainer does

    def loss_fn(hidden, model, mb):
        loss, diag = fused_oreal_loss(hidden, model.lm_head_weight(), mb.fields["labels"],
                                      coef_logp=torch.full_like(mb.fields["labels"], -1.0 / tokens,
                                                                dtype=torch.float32),
                                      tp_group=tp_group, weight_grad_into=model.lm_head_main_grad(),
                                      num_labelled=mb.num_labelled)
        return loss, {"loss": loss.detach()}

    times = []
    for step in range(warmup + steps):
        zero_grads(chunks)
        sync(topo.device)
        start = time.perf_counter()
        forward_backward(chunks, [batch], loss_fn)
        finalize_grads(chunks)
        sync(topo.device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak, peak_name = peak_flops(topo.device, getattr(torch, dtype))
    mfu = model_flops(arch, tokens, doc_lengths) / seconds / topo.world_size / peak
    return Throughput(seconds, tokens / seconds, mfu, peak, peak_name, len(doc_lengths), len(times))


def run(args):
    from megatron.core import parallel_state

    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp

    arch = parse_arch(read_hf_config(args.hf_config), where=args.hf_config)
    if args.layers:
        arch = replace(arch, num_layers=args.layers)
    topo = init_distributed(ParallelConfig(tp=args.tp, pp=args.pp), arch.num_layers)
    chunks = wrap_ddp(build_model(arch, dtype=args.dtype))
    tp_group = parallel_state.get_tensor_model_parallel_group() if args.tp > 1 else None
    result = measure(chunks, arch, args.tokens, args.doc_len, topo, args.dtype, args.steps, args.warmup, tp_group)
    if topo.is_main:
        print_header(topo.device)
        print(f"bench train: {arch.family} h={arch.hidden_size} layers={arch.num_layers} "
              f"tokens/step={args.tokens} docs={result.docs}×≤{args.doc_len} {args.dtype} "
              f"tp={args.tp} pp={args.pp} world={topo.world_size}")
        print(f"  step {result.seconds * 1e3:.1f} ms (median of {result.steps}), "
              f"{result.tokens_per_s:,.0f} tokens/s ({result.tokens_per_s / topo.world_size:,.0f}/s per rank), "
              f"MFU {result.mfu:.1%} of {result.peak / 1e12:.2f} TFLOP/s ({result.peak_name})")
    shutdown()
