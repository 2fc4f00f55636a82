"""Front door: `token_logprobs` and `fused_oreal_loss`, autograd wrappers over the chunk driver.

The implementation is chosen from the tensors' device: the Triton kernels on CUDA, the chunked
PyTorch code elsewhere; `backend=` forces one ("triton", "torch", or "naive" — the reference that
materialises all logits, for tests and benchmarks only).
"""
from types import SimpleNamespace
from typing import NamedTuple

import torch

from . import chunked, kl, reference
from .vocab_parallel import shard_range

BACKENDS = ("triton", "torch", "naive")


class OrealLossDiagnostics(NamedTuple):
    """Per-token values, detached, fp32 [T], 0 where the label is ignore_index."""
    logp: torch.Tensor
    kl: torch.Tensor
    entropy: torch.Tensor


def _ops(backend: str):
    if backend == "triton":
        # Imported late: for CPU runs TRITON_INTERPRET must be set before the kernels are defined.
        from . import triton_grad, triton_stats
        return SimpleNamespace(row_stats=triton_stats.row_stats, logit_grad=triton_grad.logit_grad)
    from . import torch_ops
    return torch_ops


def _check_inputs(hidden, weight, labels, temperature, backend):
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"expected hidden [T, H] and weight [V_local, H]; got {tuple(hidden.shape)} "
                         f"and {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1] or labels.dtype.is_floating_point:
        raise ValueError(f"expected integer labels [{hidden.shape[0]}]; got {labels.dtype} {tuple(labels.shape)}")
    if hidden.dtype != weight.dtype or hidden.dtype not in (torch.float32, torch.bfloat16, torch.float16,
                                                            torch.float64):
        raise ValueError(f"hidden and weight must share a float dtype; got {hidden.dtype} and {weight.dtype}")
    if not (hidden.device == weight.device == labels.device):
        raise ValueError(f"hidden, weight, labels on different devices: {hidden.device}, {weight.device}, "
                         f"{labels.device}")
    if weight.shape[0] < 1:
        raise ValueError("weight has no vocab rows")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if backend not in (None,) + BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS} or None (automatic)")


def _pick_backend(backend, hidden, tp_group):
    if backend == "naive" and tp_group is not None:
        raise ValueError("backend='naive' (the reference) does not support tp_group")
    if backend is not None:
        return backend
    return "triton" if hidden.is_cuda else "torch"


def _problem(hidden, weight, labels, temperature, tp_group, ignore_index, backend, chunk_tokens, num_labelled):
    """(LMHeadProblem over the labelled tokens, index of those tokens or None when all are labelled)."""
    vocab_start, vocab_size = shard_range(weight.shape[0], tp_group, weight.device)
    index = _labelled_index(labels != ignore_index, num_labelled)
    kept = labels if index is None else labels[index]
    _check_label_range(kept, vocab_size, ignore_index)
    local = kept.long() - vocab_start
    local = torch.where((local >= 0) & (local < weight.shape[0]), local, torch.full_like(local, -1))
    problem = chunked.LMHeadProblem(
        hidden=(hidden if index is None else hidden[index]).contiguous(),
        weight=weight.contiguous(),
        labels_local=local.contiguous(),
        inv_temp=1.0 / float(temperature),
        group=tp_group,
        ops=_ops(backend),
        chunk_tokens=chunk_tokens or chunked.default_chunk_tokens(weight.shape[0], hidden.device),
    )
    return problem, index


def _labelled_index(labelled, num_labelled):
    """[K] positions of the labelled tokens, or None when every token is labelled. Without the caller's
    count this is the call's one host sync (how many tokens carry a label); with it, none."""
    if num_labelled is None:
        index = torch.nonzero(labelled).squeeze(1)
        return None if index.numel() == labelled.numel() else index
    message = f"num_labelled={num_labelled} does not match the labels"
    if not 0 <= num_labelled <= labelled.numel():
        raise ValueError(f"{message}: there are {labelled.numel()} tokens")
    if labelled.is_cuda:  # checked on the device, without waiting for it
        torch._assert_async(labelled.sum() == num_labelled, message)
    elif int(labelled.sum()) != num_labelled:
        raise ValueError(f"{message}: {int(labelled.sum())} tokens carry a label")
    if num_labelled == labelled.numel():
        return None
    return torch.nonzero_static(labelled, size=num_labelled).squeeze(1)


def _check_label_range(labels, vocab_size, ignore_index):
    message = f"labels must lie in [0, {vocab_size}) or equal ignore_index={ignore_index}"
    if labels.is_cuda:  # checked on the device, without waiting for it
        torch._assert_async(((labels >= 0) & (labels < vocab_size)).all(), message)
    elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= vocab_size):
        raise ValueError(f"{message}; found {int(labels.min())}..{int(labels.max())}")


def _scatter(values, index, n):
    if index is None:
        return values
    out = values.new_zeros((n,) + values.shape[1:])
    out[index] = values
    return out


def _gather(values, index):
    values = values.to(torch.float32)
    return (values if index is None else values[index]).contiguous()


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, tp_group, ignore_index, backend, chunk_tokens,
                num_labelled):
        problem, index = _problem(hidden, weight, labels, temperature, tp_group, ignore_index, backend,
                                  chunk_tokens, num_labelled)
        logp, entropy, lse = chunked.forward_logprobs(problem)
        ctx.problem, ctx.index, ctx.n = problem, index, hidden.shape[0]
        ctx.save_for_backward(lse, entropy)
        return _scatter(logp, index, ctx.n), _scatter(entropy, index, ctx.n)

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        lse, entropy = ctx.saved_tensors
        grad_logp = (torch.zeros_like(lse) if grad_logp is None else _gather(grad_logp, ctx.index))
        grad_entropy = None if grad_entropy is None else _gather(grad_entropy, ctx.index)
        grad_hidden, grad_weight = chunked.backward_logprobs(ctx.problem, lse, entropy, grad_logp, grad_entropy)
        ctx.problem = None
        return _scatter(grad_hidden, ctx.index, ctx.n), grad_weight, None, None, None, None, None, None, None


def token_logprobs(hidden, weight, labels, *, temperature=1.0, tp_group=None, ignore_index=-100,
                   return_entropy=False, backend=None, chunk_tokens=None, num_labelled=None):
    """Log-probability of each token's label under softmax(hidden @ weight.T / temperature), never
    materialising more than one chunk of logits.

    hidden [T, H] and weight [V_local, H] (bf16/fp32; weight is this rank's contiguous vocab shard under
    `tp_group`, the full head when None); labels [T] global ids. Returns fp32 logp [T] (0 at
    ignore_index), and the entropy [T] of the tempered distribution when `return_entropy`. Both are
    differentiable w.r.t. hidden and weight; the hidden gradient is summed over `tp_group` (pass the
    replicated hidden states, not a copy_to_tensor_model_parallel_region output). The backward pass
    recomputes the logits; use `fused_oreal_loss` for training.

    `num_labelled`: how many labels are not `ignore_index`, when the caller knows it on the host (the
    trainer does, from its CPU-built micro-batches). Then the call waits for the device nowhere; without
    it, counting the labelled tokens is one host sync. A wrong count is an error (on CUDA, raised by the
    device).
    """
    _check_inputs(hidden, weight, labels, temperature, backend)
    backend = _pick_backend(backend, hidden, tp_group)
    if backend == "naive":
        _labelled_index(labels != ignore_index, num_labelled)  # the same count check as the others
        logp, entropy = reference.naive_token_logprobs(hidden, weight, labels, temperature=temperature,
                                                       ignore_index=ignore_index)
    else:
        logp, entropy = _TokenLogprobs.apply(hidden, weight, labels, temperature, tp_group, ignore_index,
                                             backend, chunk_tokens, num_labelled)
    return (logp, entropy) if return_entropy else logp


def _per_token(value, name, n, device, required=False):
    """A coefficient given as None, a number, or a [T] tensor → fp32 [T] tensor (no gradient)."""
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return torch.zeros(n, dtype=torch.float32, device=device)
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            raise ValueError(f"{name} requires grad; fused_oreal_loss treats it as a constant — detach it")
        if value.dim() == 0:
            value = value.expand(n)
        if value.shape != (n,):
            raise ValueError(f"{name} must be a number or a [{n}] tensor; got shape {tuple(value.shape)}")
        return value.to(device=device, dtype=torch.float32)
    return torch.full((n,), float(value), dtype=torch.float32, device=device)


class _FusedOrealLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, coef_logp, coef_ratio, ref_logp, kl_coef, kl_type, temperature,
                tp_group, ignore_index, backend, chunk_tokens, weight_grad_into, num_labelled):
        problem, index = _problem(hidden, weight, labels, temperature, tp_group, ignore_index, backend,
                                  chunk_tokens, num_labelled)
        c_logp, c_ratio, ref, c_kl = (_gather(v, index) for v in (coef_logp, coef_ratio, ref_logp, kl_coef))

        def grad_of_logp(lo, hi, logp):
            return c_logp[lo:hi] + c_ratio[lo:hi] + c_kl[lo:hi] * kl.kl_grad(logp, ref[lo:hi], kl_type)

        logp, entropy, grad_hidden, grad_weight = chunked.forward_with_grads(problem, grad_of_logp, weight_grad_into)
        kl_values = kl.kl_value(logp, ref, kl_type)
        loss = (c_logp * logp).sum() + c_ratio.sum() + (c_kl * kl_values).sum()
        n = hidden.shape[0]
        ctx.weight_grad_taken = weight_grad_into is not None
        ctx.save_for_backward(_scatter(grad_hidden, index, n), grad_weight)
        diagnostics = (_scatter(logp, index, n), _scatter(kl_values, index, n), _scatter(entropy, index, n))
        ctx.mark_non_differentiable(*diagnostics)
        return (loss,) + diagnostics

    @staticmethod
    def backward(ctx, grad_loss, *_):
        grad_hidden, grad_weight = ctx.saved_tensors
        if ctx.weight_grad_taken:
            # The weight gradient already went into the caller's buffer at scale 1 (a device-side
            # check: no host sync).
            torch._assert_async(grad_loss == 1, "fused_oreal_loss(weight_grad_into=...): the loss must be "
                                                "backpropagated with gradient 1 (unscaled)")
            grad_weight = None
        else:
            grad_weight = grad_weight * grad_loss.to(grad_weight.dtype)
        return (grad_hidden * grad_loss.to(grad_hidden.dtype), grad_weight,
                None, None, None, None, None, None, None, None, None, None, None, None, None)


def fused_oreal_loss(hidden, weight, labels, *, coef_logp=None, coef_ratio=None, ref_logp=None, kl_coef=None,
                     kl_type="k3", temperature=1.0, tp_group=None, ignore_index=-100, backend=None,
                     chunk_tokens=None, weight_grad_into=None, num_labelled=None):
    """The token-weighted OREAL actor loss straight from hidden states, gradients computed in the forward.

        loss = Σ_t [ coef_logp_t·logp_t + coef_ratio_t·exp(logp_t − sg(logp_t)) + kl_coef_t·KL(logp_t, ref_logp_t) ]

    over the tokens whose label is not `ignore_index`. Every coefficient is a number or a [T] tensor
    treated as a constant; put the normalisers in them (see kernels/README.md for OREAL's terms a, b, c).
    exp(ℓ − sg ℓ) is 1 in value with gradient ∇ℓ (how OREAL writes its negative policy-gradient term).
    KL estimators (kl_type 'k3' | 'k1' | 'mse') are those of kernels/kl.py; ref_logp is needed when
    kl_coef is given. Because dL/dlogp_t depends only on logp_t and ref_logp_t, dL/dlogits is formed
    chunk by chunk in the forward pass (6·T·H·V FLOP, no recomputation) and backward only scales the
    stored gradients by grad_output. Hidden/weight conventions as in `token_logprobs`.

    `weight_grad_into`: an fp32 tensor shaped like `weight` (megatron's `main_grad` of the head) into which
    the weight's gradient is added during the forward pass; the backward of this loss then neither gives
    the weight a gradient nor reaches it (its gradient hooks do not run for this use).
    This drops the fp32 [V_local, H] accumulator kept until backward and its low-precision copy (2.2 +
    1.1 GiB at the Qwen2.5-7B head, TP=1). The loss must be backpropagated unscaled (gradient 1; checked
    on the device) and the weight's other uses must add their own gradients as usual.
    `num_labelled`: as in `token_logprobs` (with it, no host sync).

    Returns (loss fp32 scalar, OrealLossDiagnostics(logp, kl, entropy)), diagnostics detached.
    """
    _check_inputs(hidden, weight, labels, temperature, backend)
    if weight_grad_into is not None and (weight_grad_into.shape != weight.shape
                                         or weight_grad_into.dtype != torch.float32
                                         or weight_grad_into.device != weight.device):
        raise ValueError(f"weight_grad_into must be fp32 {tuple(weight.shape)} on {weight.device}; got "
                         f"{weight_grad_into.dtype} {tuple(weight_grad_into.shape)} on {weight_grad_into.device}")
    if kl_type not in kl.KL_TYPES:
        raise ValueError(f"kl_type={kl_type!r}: expected one of {kl.KL_TYPES}")
    n, device = hidden.shape[0], hidden.device
    kl_coef_given = kl_coef is not None and not (isinstance(kl_coef, (int, float)) and kl_coef == 0)
    coef_logp = _per_token(coef_logp, "coef_logp", n, device)
    coef_ratio = _per_token(coef_ratio, "coef_ratio", n, device)
    kl_coef = _per_token(kl_coef, "kl_coef", n, device)
    has_ref = ref_logp is not None
    ref_logp = _per_token(ref_logp, "ref_logp", n, device, required=kl_coef_given)
    backend = _pick_backend(backend, hidden, tp_group)
    if backend == "naive" and weight_grad_into is not None:
        raise ValueError("backend='naive' (the reference) does not support weight_grad_into")
    if backend == "naive":
        _labelled_index(labels != ignore_index, num_labelled)  # the same count check as the others
        loss, *diagnostics = reference.naive_oreal_loss(
            hidden, weight, labels, coef_logp=coef_logp, coef_ratio=coef_ratio, ref_logp=ref_logp,
            kl_coef=kl_coef, kl_type=kl_type, temperature=temperature, ignore_index=ignore_index)
    else:
        if weight_grad_into is not None:
            # Off the graph: autograd would otherwise still run the weight's gradient hooks, with no
            # gradient (megatron DDP's hook asserts on that when it overlaps the reduction).
            weight = weight.detach()
        loss, *diagnostics = _FusedOrealLoss.apply(hidden, weight, labels, coef_logp, coef_ratio, ref_logp,
                                                   kl_coef, kl_type, temperature, tp_group, ignore_index,
                                                   backend, chunk_tokens, weight_grad_into, num_labelled)
    if not has_ref:  # no reference given: report no KL rather than the KL to a zero log-prob
        diagnostics[1] = torch.zeros_like(diagnostics[1])
    return loss, OrealLossDiagnostics(*diagnostics)
