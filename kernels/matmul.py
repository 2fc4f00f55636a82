"""GEMMs with fp32 results for the LM-head path (bf16 operands stay bf16; only the output is fp32)."""
import torch


def mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with an fp32 result, accumulated in fp32."""
    if a.dtype == torch.float32 and b.dtype == torch.float32:
        return a @ b
    if a.is_cuda:
        # cuBLAS bf16/fp16 GEMM writing fp32: no rounding of the logits to bf16.
        return torch.ops.aten.mm.dtype(a, b, torch.float32)
    # CPU has no mixed-dtype GEMM: compute in fp32 on the (already rounded) low-precision values.
    return a.float() @ b.float()


def addmm_f32_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b in place, acc fp32."""
    if a.dtype == torch.float32 and b.dtype == torch.float32:
        acc.addmm_(a, b)
    elif a.is_cuda:
        torch.ops.aten.addmm.dtype_out(acc, a, b, torch.float32, out=acc)
    else:
        acc.addmm_(a.float(), b.float())
