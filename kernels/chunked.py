"""The chunk driver shared by the Triton and the PyTorch implementations.

Tokens are processed in chunks: one GEMM gives the chunk's fp32 logits against this rank's vocab
shard, `ops.row_stats` reduces them, the few floats per token are merged over the TP group, and,
when gradients are wanted, `ops.logit_grad` turns the same logits buffer into dL/dlogits for the
two gradient GEMMs. Peak extra memory is one chunk of logits (plus its low-precision copy) and the
fp32 accumulators for the gradients.
"""
from dataclasses import dataclass

import torch

from .matmul import addmm_f32_, mm_f32
from .vocab_parallel import all_reduce_stats, all_reduce_sum_

_CHUNK_BYTES = {"cuda": 768 << 20, "cpu": 64 << 20}


def default_chunk_tokens(vocab_local: int, device: torch.device) -> int:
    budget = _CHUNK_BYTES.get(device.type, _CHUNK_BYTES["cpu"])
    # cuda: fp32 logits + bf16 dz per element; cpu: about four fp32 temporaries in torch_ops
    per_token = vocab_local * (6 if device.type == "cuda" else 16)
    return max(16, min(8192, budget // per_token // 16 * 16))


@dataclass
class LMHeadProblem:
    hidden: torch.Tensor        # [N, H] tokens with a label (ignored tokens already removed)
    weight: torch.Tensor        # [V_local, H]
    labels_local: torch.Tensor  # [N] int64: label - vocab_start, or -1 when outside this shard
    inv_temp: float
    group: object               # torch.distributed group or None
    ops: object                 # module with row_stats / logit_grad
    chunk_tokens: int

    def chunks(self):
        n = self.hidden.shape[0]
        for lo in range(0, n, self.chunk_tokens):
            yield lo, min(n, lo + self.chunk_tokens)

    def logits_and_stats(self, lo: int, hi: int):
        """fp32 logits of tokens lo:hi and their (lse, logp, entropy) over the whole vocab."""
        logits = mm_f32(self.hidden[lo:hi], self.weight.t())
        m, s, a = self.ops.row_stats(logits, self.inv_temp)
        labels = self.labels_local[lo:hi]
        in_shard = labels >= 0
        target = logits.gather(1, labels.clamp(min=0)[:, None]).squeeze(1) * self.inv_temp
        target = torch.where(in_shard, target, torch.zeros_like(target))
        if self.group is not None:
            m, s, a, target = all_reduce_stats(m, s, a, target, self.group)
        log_s = torch.log(s)
        lse = m + log_s
        return logits, lse, target - lse, log_s - a / s

    def accumulate_grads(self, logits, lo, hi, lse, coef_logp, grad_hidden, grad_weight,
                         coef_entropy=None, entropy=None):
        """Add d(Σ coef_logp·logp + coef_entropy·entropy)/d(hidden, weight) of tokens lo:hi."""
        hidden = self.hidden[lo:hi]
        out = logits if hidden.dtype == torch.float32 else torch.empty_like(logits, dtype=hidden.dtype)
        dz = self.ops.logit_grad(logits, self.labels_local[lo:hi], lse, coef_logp, self.inv_temp, out,
                                 coef_entropy, entropy)
        grad_hidden[lo:hi] = mm_f32(dz, self.weight)
        addmm_f32_(grad_weight, dz.t(), hidden)

    def new_grad_buffers(self, weight_grad_into=None):
        """(fp32 hidden gradient, fp32 weight gradient): zeros, or `weight_grad_into` itself when given."""
        grad_hidden = torch.zeros(self.hidden.shape, dtype=torch.float32, device=self.hidden.device)
        if weight_grad_into is not None:
            return grad_hidden, weight_grad_into
        return grad_hidden, torch.zeros(self.weight.shape, dtype=torch.float32, device=self.weight.device)

    def finish_grads(self, grad_hidden, grad_weight):
        """Sum the hidden gradient over the shards, return both in the operands' dtypes (the weight's
        None when it went into a caller's buffer)."""
        all_reduce_sum_(grad_hidden, self.group)
        return grad_hidden.to(self.hidden.dtype), None if grad_weight is None else grad_weight.to(self.weight.dtype)


def forward_logprobs(problem: LMHeadProblem):
    """(logp, entropy, lse), each [N] fp32."""
    n = problem.hidden.shape[0]
    out = torch.empty(3, n, dtype=torch.float32, device=problem.hidden.device)
    for lo, hi in problem.chunks():
        _, lse, logp, entropy = problem.logits_and_stats(lo, hi)
        out[0, lo:hi], out[1, lo:hi], out[2, lo:hi] = logp, entropy, lse
    return out[0], out[1], out[2]


def backward_logprobs(problem: LMHeadProblem, lse, entropy, grad_logp, grad_entropy):
    """Gradients of Σ grad_logp·logp + grad_entropy·entropy; recomputes each chunk's logits (8·T·H·V)."""
    grad_hidden, grad_weight = problem.new_grad_buffers()
    for lo, hi in problem.chunks():
        logits = mm_f32(problem.hidden[lo:hi], problem.weight.t())
        coef_entropy = None if grad_entropy is None else grad_entropy[lo:hi]
        problem.accumulate_grads(logits, lo, hi, lse[lo:hi], grad_logp[lo:hi], grad_hidden, grad_weight,
                                 coef_entropy, None if grad_entropy is None else entropy[lo:hi])
    return problem.finish_grads(grad_hidden, grad_weight)


def forward_with_grads(problem: LMHeadProblem, grad_of_logp, weight_grad_into=None):
    """One pass, 6·T·H·V FLOP: per chunk, logits → stats → logp → g = grad_of_logp(lo, hi, logp) →
    dL/dlogits → gradients. Returns (logp, entropy, grad_hidden, grad_weight); with `weight_grad_into`
    (fp32, the weight's shape) the weight gradient is added into it instead and grad_weight is None."""
    n = problem.hidden.shape[0]
    logp_entropy = torch.empty(2, n, dtype=torch.float32, device=problem.hidden.device)
    grad_hidden, grad_weight = problem.new_grad_buffers(weight_grad_into)
    for lo, hi in problem.chunks():
        logits, lse, logp, entropy = problem.logits_and_stats(lo, hi)
        logp_entropy[0, lo:hi], logp_entropy[1, lo:hi] = logp, entropy
        coef = grad_of_logp(lo, hi, logp).to(torch.float32).contiguous()
        problem.accumulate_grads(logits, lo, hi, lse, coef, grad_hidden, grad_weight)
    return (logp_entropy[0], logp_entropy[1]) + problem.finish_grads(
        grad_hidden, None if weight_grad_into is not None else grad_weight)
