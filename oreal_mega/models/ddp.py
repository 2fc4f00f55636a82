"""Data-parallel gradient handling with megatron-core's DDP (contiguous grad buffers in fp32)."""
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.distributed import (DistributedDataParallel, DistributedDataParallelConfig,
                                       finalize_model_grads)


def wrap_ddp(chunks: list[torch.nn.Module], distributed_optimizer: bool = False,
             overlap_grad_reduce: bool | None = None, bucket_size: int | None = None) -> list[DistributedDataParallel]:
    """Wrap each model chunk; gradients accumulate in fp32 `param.main_grad` buffers.

    `overlap_grad_reduce`: reduce each gradient bucket during the backward as soon as the last
    micro-batch has produced it (megatron's bucketed overlap); None: on with NCCL, off on gloo, whose
    collectives would run on the CPU cores the compute needs. With overlap, megatron's schedules get
    the chunks' `no_sync` (the reduction waits for the last micro-batch) and `bucket_size` elements
    make a bucket (None: megatron's default, max(4e7, 1e6 × DP size))."""
    if overlap_grad_reduce is None:
        overlap_grad_reduce = dist.get_backend(parallel_state.get_data_parallel_group()) == "nccl"
    config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=overlap_grad_reduce,
                                           use_distributed_optimizer=distributed_optimizer,
                                           bucket_size=bucket_size)
    wrapped = [DistributedDataParallel(config=chunk.config, ddp_config=config, module=chunk,
                                       # only the first chunk buckets, as megatron-LM does with VPP
                                       disable_bucketing=i > 0)
               for i, chunk in enumerate(chunks)]
    if overlap_grad_reduce:  # the chunks share one TransformerConfig, read by the schedules
        no_sync = [chunk.no_sync for chunk in wrapped]
        chunks[0].config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
    return wrapped


def mark_grad_ready_in_backward(chunk: torch.nn.Module, param: torch.nn.Parameter, loss: torch.Tensor) -> None:
    """For a parameter whose gradient the loss added straight into `main_grad` (the fused LM-head loss,
    in the forward): autograd gives it no gradient, so DDP's hook, which marks a parameter's gradient
    ready for the overlapped reduction, never fires; its bucket would then never be reduced (megatron
    asserts at the next zero_grad_buffer or at finish_grad_sync). Mark it ready when the backward
    reaches `loss` instead: megatron's schedules open the last micro-batch's sync window around its
    backward, not its forward. A no-op without overlap."""
    if not (isinstance(chunk, DistributedDataParallel) and chunk.ddp_config.overlap_grad_reduce):
        return
    bucket_group = chunk.param_to_bucket_group[param]
    loss.grad_fn.register_prehook(lambda grad_outputs: bucket_group.register_grad_ready(param,
                                                                                        chunk.force_all_reduce))


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
    """Sum gradients over data-parallel ranks (waiting for the overlapped reductions) and tie shared
    embeddings across pipeline stages. Losses are globally normalised (`calculate_per_token_loss`), so
    DP sums rather than averages; that is also why the schedules get no `finalize_model_grads_func`
    (they would divide by their count of micro-batches)."""
    finalize_model_grads(chunks)
