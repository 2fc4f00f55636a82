"""Model FLOP counts and the measured matmul peak they are divided by for MFU."""
import time

import torch


def model_flops(arch, num_tokens: int, doc_lengths: list[int]) -> float:
    """6·N·T for the dense weights (LM head included) plus causal attention, forward+backward."""
    h, layers = arch.hidden_size, arch.num_layers
    q = arch.num_attention_heads * arch.kv_channels
    kv = arch.num_query_groups * arch.kv_channels
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * arch.ffn_hidden_size
    dense = layers * per_layer + arch.vocab_size * h
    attention = 6 * layers * q * sum(n * n for n in doc_lengths)  # 2 matmuls × ½ causal × 2 × 3
    return 6 * dense * num_tokens + attention


def measured_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large matmul on this device, measured now."""
    n = 4096 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 10
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device):
    """Wait for queued GPU work (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
