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
    for chunk in chunks:
        chunk.zero_grad_buffer()


def finalize_grads(chunks: list[DistributedDataParallel]) -> None:
    """Sum gradients over data-parallel ranks and tie shared embeddings across pipeline stages.
    Losses are globally normalised (`calculate_per_token_loss`), so DP sums rather than averages."""
    finalize_model_grads(chunks)
