"""Triton kernel: gradient of Σ_t (c_t·logp_t + e_t·entropy_t) with respect to a chunk of fp32 logits.

One program writes BLOCK columns of one row: p = exp(z − lse),
dz = inv_temp·(c·onehot − p·(c + e·(log p + entropy))), stored in the GEMM operand dtype.
The output may alias the input (fp32): every element is read before it is written by the same program.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _logit_grad_kernel(
    logits_ptr, row_stride, vocab_size, inv_temp,
    labels_ptr, lse_ptr, coef_logp_ptr, coef_entropy_ptr, entropy_ptr,
    out_ptr, out_row_stride,
    HAS_ENTROPY: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = cols < vocab_size
    z = tl.load(logits_ptr + row.to(tl.int64) * row_stride + cols, mask=valid, other=0.0).to(tl.float32)
    log_p = z * inv_temp - tl.load(lse_ptr + row)
    p = tl.exp(log_p)
    c = tl.load(coef_logp_ptr + row)
    coef = c
    if HAS_ENTROPY:
        coef = c + tl.load(coef_entropy_ptr + row) * (log_p + tl.load(entropy_ptr + row))
    label = tl.load(labels_ptr + row)
    grad = tl.where(cols == label, c, 0.0) - p * coef
    tl.store(out_ptr + row.to(tl.int64) * out_row_stride + cols,
             (grad * inv_temp).to(out_ptr.dtype.element_ty), mask=valid)


def logit_grad(logits, labels_local, lse, coef_logp, inv_temp, out, coef_entropy=None, entropy=None,
               *, block: int = 4096):
    """Same contract as torch_ops.logit_grad."""
    rows, vocab = logits.shape
    has_entropy = coef_entropy is not None
    _logit_grad_kernel[(rows, triton.cdiv(vocab, block))](
        logits, logits.stride(0), vocab, inv_temp,
        labels_local, lse, coef_logp,
        coef_entropy if has_entropy else coef_logp, entropy if has_entropy else lse,
        out, out.stride(0),
        HAS_ENTROPY=has_entropy, BLOCK=block, num_warps=8 if block >= 2048 else 4,
    )
    return out
