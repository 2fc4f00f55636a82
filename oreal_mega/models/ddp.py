"""Data-parallel gradient handling with megatron-core's DDP (contiguous grad buffers in fp32)."""
import torch
from megatron.core.distributed import (DistributedDataParallel, DistributedDataParallelConfig,
                                       finalize_model_grads)


def wrap_ddp(chunks: list[torch.nn.Module], distributed_optimizer: bool = False) -> list[DistributedDataParallel]:
    """Wrap each model chunk; gradients accumulate in fp32 `param.main_grad` buffers."""
    config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                           use_distributed_optimizer=distributed_optimizer)
    return [DistributedDataParallel(config=chunk.config, ddp_config=config, module=chunk,
                                    # only the first chunk buckets, as megatron-LM does with VPP
                                    disable_bucketing=i > 0)
            for i, chunk in enumerate(chunks)]


def zero_grads(chunks: list[DistributedDataParallel]) -> None:
    """Zero the fp32 grad buffers and drop every `param.grad`. The fp32 megatron optimizer leaves
    `param.grad` aliasing `param.main_grad` after a step; autograd would then accumulate the next
    backward into main_grad itself and DDP's hook add it a second time (measured: the first
    micro-batch of every step after the first counted twice; a resumed run, whose first step had no
    alias, got half the uninterrupted run's gradient)."""
    for chunk in chunks:
        chunk.zero_grad_buffer()
        for param in chunk.parameters():
            param.grad = None


def finalize_grads(chunks: list[DistributedDataParallel]) -> None:
    """Sum gradients over data-parallel ranks and tie shared embeddings across pipeline stages.
    Losses are globally normalised (`calculate_per_token_loss`), so DP sums rather than averages."""
    finalize_model_grads(chunks)
