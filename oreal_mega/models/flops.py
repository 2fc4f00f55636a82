"""Model FLOP counts and the peak they are divided by for MFU."""
import time

import torch

# Dense bf16 tensor-core peak of the cards we run on (vendor data sheets, without sparsity).
NOMINAL_BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "H800": 989.4e12, "A100": 312e12, "B200": 2250e12}


def model_flops(arch, num_tokens: int, doc_lengths: list[int]) -> float:
    """6·N·T for the dense weights (LM head included) plus causal attention, forward+backward."""
    h, layers = arch.hidden_size, arch.num_layers
    q = arch.num_attention_heads * arch.kv_channels
    kv = arch.num_query_groups * arch.kv_channels
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * arch.ffn_hidden_size
    dense = layers * per_layer + arch.vocab_size * h
    attention = 6 * layers * q * sum(n * n for n in doc_lengths)  # 2 matmuls × ½ causal × 2 × 3
    return 6 * dense * num_tokens + attention


def measured_matmul_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul on this device, measured now (best of 10 after warm-up)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(FLOP/s, what it is) for MFU: the card's nominal dense bf16 peak where we know the card,
    otherwise a matmul measured now in `dtype` (CPUs, unknown accelerators)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for card, flops in NOMINAL_BF16_PEAK.items():
            if card in name:
                return flops, f"nominal bf16 peak of {card}"
    return measured_matmul_flops(device, dtype), f"measured {str(dtype).removeprefix('torch.')} matmul"


def sync(device):
    """Wait for queued GPU work (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
