"""Per-chunk softmax statistics and logit gradients in plain PyTorch (the CPU implementation).

Same contract as the Triton kernels in triton_stats.py / triton_grad.py: `logits` are the raw fp32
logits of one chunk of tokens against this rank's vocab shard; the temperature is applied here.
"""
import torch


def row_stats(logits: torch.Tensor, inv_temp: float):
    """Per row of z = logits·inv_temp: m = max z, s = Σ exp(z−m), a = Σ exp(z−m)·(z−m)."""
    z = logits * inv_temp
    m = z.amax(dim=1)
    z -= m[:, None]
    e = torch.exp(z)
    s = e.sum(dim=1)
    a = (e * z).sum(dim=1)
    return m, s, a


def logit_grad(logits, labels_local, lse, coef_logp, inv_temp, out, coef_entropy=None, entropy=None):
    """out = d(Σ_t coef_logp_t·logp_t + coef_entropy_t·entropy_t)/d(logits), written in out.dtype.

    With z = logits·inv_temp and p = softmax(z):  dlogp/dz = onehot − p,
    dentropy/dz = −p·(log p + entropy); the chain rule through the temperature adds inv_temp.
    labels_local is −1 where the label is not in this shard. `out` may alias `logits`.
    """
    log_p = logits * inv_temp - lse[:, None]
    p = torch.exp(log_p)
    coef = coef_logp[:, None]
    if coef_entropy is not None:
        coef = coef + coef_entropy[:, None] * (log_p + entropy[:, None])
    grad = p.mul_(coef).neg_()
    in_shard = labels_local >= 0
    grad.scatter_add_(1, labels_local.clamp_min(0)[:, None], torch.where(in_shard, coef_logp, 0.0)[:, None])
    out.copy_(grad.mul_(inv_temp))
    return out
