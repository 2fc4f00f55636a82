"""Triton kernel: per-row online softmax statistics of a chunk of fp32 logits (one vocab shard).

Each program reduces one contiguous vocab segment of one row, keeping per-lane running
(max, Σ exp, Σ exp·shift) so that the inner loop has no cross-lane reduction and one exp per element;
the segments are merged in PyTorch with the same rule that merges vocab shards across ranks.
"""
import torch
import triton
import triton.language as tl

from .vocab_parallel import merge_stats

_FAR_BELOW = tl.constexpr(-1.0e30)  # finite "minus infinity": exp(_FAR_BELOW - m) == 0 without inf - inf = nan


@triton.jit
def _row_stats_kernel(
    logits_ptr, row_stride, vocab_size, segment_size, inv_temp,
    max_ptr, sum_ptr, shifted_sum_ptr, n_segments,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    segment = tl.program_id(1)
    row_ptr = logits_ptr + row.to(tl.int64) * row_stride
    begin = segment * segment_size
    end = tl.minimum(begin + segment_size, vocab_size)
    lane = tl.arange(0, BLOCK)

    m = tl.full([BLOCK], _FAR_BELOW, tl.float32)
    s = tl.zeros([BLOCK], tl.float32)  # Σ exp(z - m)
    a = tl.zeros([BLOCK], tl.float32)  # Σ exp(z - m)·(z - m)
    for start in range(begin, end, BLOCK):
        cols = start + lane
        valid = cols < end
        z = tl.load(row_ptr + cols, mask=valid, other=0.0).to(tl.float32) * inv_temp
        d = z - m
        e = tl.exp(-tl.abs(d))
        grows = d > 0
        # new max: rescale the old sums by e, the new element weighs 1 with shift 0;
        # else: the new element weighs e with shift d.
        new_s = tl.where(grows, s * e + 1.0, s + e)
        new_a = tl.where(grows, e * (a - s * d), a + e * d)
        m = tl.where(valid, tl.maximum(m, z), m)
        s = tl.where(valid, new_s, s)
        a = tl.where(valid, new_a, a)

    row_max = tl.max(m, axis=0)
    scale = tl.exp(m - row_max)
    row_sum = tl.sum(s * scale, axis=0)
    row_shifted = tl.sum(scale * (a + s * (m - row_max)), axis=0)
    out = row * n_segments + segment
    tl.store(max_ptr + out, row_max)
    tl.store(sum_ptr + out, row_sum)
    tl.store(shifted_sum_ptr + out, row_shifted)


def row_stats(logits: torch.Tensor, inv_temp: float, *, block: int = 2048, target_programs: int = 1024):
    """Same contract as torch_ops.row_stats: (m, s, a) per row, fp32."""
    rows, vocab = logits.shape
    n_blocks = triton.cdiv(vocab, block)
    # Split long rows so that a small chunk of tokens still fills the GPU.
    segments = max(1, min(n_blocks, triton.cdiv(target_programs, rows)))
    segment_size = triton.cdiv(n_blocks, segments) * block
    segments = triton.cdiv(vocab, segment_size)
    partial = torch.empty(3, rows, segments, dtype=torch.float32, device=logits.device)
    _row_stats_kernel[(rows, segments)](
        logits, logits.stride(0), vocab, segment_size, inv_temp,
        partial[0], partial[1], partial[2], segments,
        BLOCK=block, num_warps=8 if block >= 2048 else 4,
    )
    return merge_stats(partial[0], partial[1], partial[2], dim=1)
