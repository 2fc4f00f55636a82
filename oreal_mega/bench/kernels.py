"""fused LM-head loss: naive vs ours (vs Liger / cut-cross-entropy if installed), time, memory, accuracy

Prints, per implementation, fwd+bwd of loss = −Σ_t w_t·logp_t: median ms, ratio to the 6·T·H·V floor at
the matmul rate measured in the same run (bf16 on CUDA, the bench dtype on CPU), peak extra memory
(CUDA: peak allocated beyond inputs and their gradients; CPU: sampled peak RSS delta), and the relative
error of logp and of both gradients against float64 on a small problem.
"""
import importlib.util
import statistics
import threading
import time

import torch

from oreal_mega.errors import UserError

from oreal_mega.bench.machine import print_header
from oreal_mega.kernels.api import fused_oreal_loss, token_logprobs
from oreal_mega.kernels.reference import naive_token_logprobs
from oreal_mega.models.flops import measured_matmul_flops

SHAPES = {"qwen2.5-7b": (3584, 152064), "qwen2.5-32b": (5120, 152064)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GIB = 1 << 30


def add_arguments(parser):
    parser.add_argument("--shape", default=None,
                        help="qwen2.5-7b | qwen2.5-32b | H,V (default: qwen2.5-7b on CUDA, 256,8192 on CPU)")
    parser.add_argument("--tokens", type=int, default=None, help="T (default: 16384 on CUDA, 1024 on CPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--repeats", type=int, default=6, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="tokens per chunk for ours (default: auto)")


def parse_shape(text: str) -> tuple[int, int]:
    if text in SHAPES:
        return SHAPES[text]
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--shape {text!r}: expected one of {sorted(SHAPES)} or 'H,V' with positive integers")
    return int(parts[0]), int(parts[1])


class _Clock:
    """Wall time of a callable: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        begin = time.perf_counter()
        fn()
        return (time.perf_counter() - begin) * 1e3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (1 << 12)


def peak_extra_gib(device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / GIB
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], _rss_bytes()) - base) / GIB


def implementations(chunk_tokens):
    """name → f(hidden, weight, labels, w) returning logp [T] and a loss to backpropagate, or the loss only."""
    def naive(h, W, y, w):
        logp, _ = naive_token_logprobs(h, W, y)
        return logp, -(w * logp).sum()

    def ours_fused(h, W, y, w):
        loss, diag = fused_oreal_loss(h, W, y, coef_logp=-w, chunk_tokens=chunk_tokens)
        return diag.logp, loss

    def ours_into_main_grad(h, W, y, w):  # as the trainer calls it: dW into megatron's main_grad, no host sync
        loss, diag = fused_oreal_loss(h, W, y, coef_logp=-w, chunk_tokens=chunk_tokens, weight_grad_into=W.main_grad,
                                      num_labelled=y.numel())
        return diag.logp, loss

    def ours_recompute(h, W, y, w):
        logp = token_logprobs(h, W, y, chunk_tokens=chunk_tokens)
        return logp, -(w * logp).sum()

    impls = {"naive PyTorch (fp32 logits)": naive, "ours fused_oreal_loss": ours_fused,
             "ours fused_oreal_loss, dW into main_grad": ours_into_main_grad,
             "ours token_logprobs (bwd recomputes)": ours_recompute}
    if importlib.util.find_spec("liger_kernel"):
        def liger(h, W, y, w):
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
            out = LigerFusedLinearCrossEntropyLoss(reduction="none")(W, h, y)
            logp = -(out[0] if isinstance(out, tuple) else out).float()
            return logp, -(w * logp).sum()
        impls["Liger FLCE, reduction=none"] = liger
    if importlib.util.find_spec("cut_cross_entropy"):
        def cce(h, W, y, w):
            from cut_cross_entropy import linear_cross_entropy
            logp = -linear_cross_entropy(h, W, y, reduction="none").float()
            return logp, -(w * logp).sum()
        impls["cut-cross-entropy"] = cce
    return impls


def _inputs(tokens, hidden_size, vocab, dtype, device, seed):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, hidden_size, generator=gen).to(device=device, dtype=dtype)
    weight = (torch.randn(vocab, hidden_size, generator=gen) / hidden_size ** 0.5).to(device=device, dtype=dtype)
    labels = torch.randint(0, vocab, (tokens,), generator=gen).to(device)
    weights = torch.rand(tokens, generator=gen).to(device)
    return hidden.requires_grad_(), weight.requires_grad_(), labels, weights


def accuracy(impl, tokens, hidden_size, vocab, dtype, device):
    """Relative errors of logp, grad_hidden, grad_weight against float64 (same rounded inputs)."""
    hidden, weight, labels, weights = _inputs(tokens, hidden_size, vocab, dtype, device, seed=1)
    weight.main_grad = torch.zeros(weight.shape, dtype=torch.float32, device=device)
    h64, w64 = (t.detach().double().cpu().requires_grad_() for t in (hidden, weight))
    logp64, _ = naive_token_logprobs(h64, w64, labels.cpu(), dtype=torch.float64)
    (-(weights.double().cpu() * logp64).sum()).backward()
    logp, loss = impl(hidden, weight, labels, weights)
    loss.backward()

    def err(value, reference):
        return float((value.detach().double().cpu() - reference).norm() / reference.norm())
    grad_weight = weight.main_grad if weight.grad is None else weight.grad
    return err(logp, logp64.detach()), err(hidden.grad, h64.grad), err(grad_weight, w64.grad)


def timing(impl, tokens, hidden_size, vocab, dtype, device, repeats):
    hidden, weight, labels, weights = _inputs(tokens, hidden_size, vocab, dtype, device, seed=2)
    hidden.grad, weight.grad = torch.zeros_like(hidden), torch.zeros_like(weight)
    # megatron's fp32 gradient buffer exists whatever the loss: allocated outside the measurement
    weight.main_grad = torch.zeros(weight.shape, dtype=torch.float32, device=device)

    def step():
        impl(hidden, weight, labels, weights)[1].backward()

    clock = _Clock(device)
    step()  # warm-up: compilation, allocator, autotuning
    extra = peak_extra_gib(device, step)
    return statistics.median(clock(step) for _ in range(repeats)), extra


def accuracy_problem(device) -> tuple[int, int, int]:
    """(T, H, V) of the small problem the accuracy is measured on."""
    return (512, 1024, 32000) if device.type == "cuda" else (128, 256, 4000)


def floor_ms(tokens: int, hidden_size: int, vocab: int, flops: float) -> float:
    """The 6·T·H·V FLOP floor at `flops` FLOP/s, in milliseconds."""
    return 6 * tokens * hidden_size * vocab / flops * 1e3


def measure(impl, tokens, hidden_size, vocab, dtype, device, repeats) -> tuple[float, float, tuple[float, ...]]:
    """(median fwd+bwd ms, peak extra GiB, relative errors of logp, grad_h, grad_W vs float64) of one
    implementation; raises torch.OutOfMemoryError when it does not fit."""
    try:
        errors = accuracy(impl, *accuracy_problem(device), dtype, device)
        ms, extra = timing(impl, tokens, hidden_size, vocab, dtype, device, repeats)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return ms, extra, errors


def run(args):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    hidden_size, vocab = parse_shape(args.shape or ("qwen2.5-7b" if on_gpu else "256,8192"))
    tokens = (16384 if on_gpu else 1024) if args.tokens is None else args.tokens
    if tokens <= 0 or args.repeats <= 0:
        raise UserError(f"--tokens {tokens} and --repeats {args.repeats} must be positive")
    dtype = DTYPES[args.dtype or ("bf16" if on_gpu else "fp32")]
    rate_dtype = torch.bfloat16 if on_gpu else dtype
    flops = measured_matmul_flops(device, rate_dtype)
    floor = floor_ms(tokens, hidden_size, vocab, flops)
    small = accuracy_problem(device)

    print_header(device)
    print(f"problem: T={tokens} H={hidden_size} V={vocab} {str(dtype).removeprefix('torch.')}, loss = -sum w_t logp_t, "
          f"median of {args.repeats} after 1 warm-up")
    print(f"matmul ceiling ({str(rate_dtype).removeprefix('torch.')}): {flops / 1e12:.3g} TFLOP/s -> floor 6*T*H*V = "
          f"{floor:.2f} ms")
    print(f"accuracy problem: T={small[0]} H={small[1]} V={small[2]} {str(dtype).removeprefix('torch.')} vs float64")
    memory = "peak extra GiB" if on_gpu else "peak RSS delta GiB"
    print(f"| implementation | fwd+bwd ms | x floor | {memory} | logp rel err | grad_h rel err | grad_W rel err |")
    print("|---|---|---|---|---|---|---|")
    for name, impl in implementations(args.chunk_tokens).items():
        try:
            ms, extra, errors = measure(impl, tokens, hidden_size, vocab, dtype, device, args.repeats)
        except torch.OutOfMemoryError as oom:
            print(f"| {name} | out of memory: {str(oom).splitlines()[0]} | | | | | |")
            continue
        print(f"| {name} | {ms:.1f} | {ms / floor:.2f}x | {extra:+.3f} | "
              + " | ".join(f"{e:.1e}" for e in errors) + " |")
    print(f"| floor 6*T*H*V | {floor:.1f} | 1.00x | | | | |")
    return 0
