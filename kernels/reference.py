"""The naive reference: materialises all [T, V] logits and lets autograd do the rest (tests, benchmarks)."""
import torch

from . import kl


def naive_token_logprobs(hidden, weight, labels, *, temperature=1.0, ignore_index=-100, dtype=None):
    """(logp [T], entropy [T]); 0 where the label is ignore_index.

    dtype=None is the usual naive path (GEMM in the inputs' dtype, log-softmax in fp32);
    dtype=torch.float64 upcasts the inputs first (the accuracy reference).
    """
    if dtype is None:
        logits = (hidden @ weight.t()).float()
    else:
        logits = hidden.to(dtype) @ weight.to(dtype).t()
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    keep = labels != ignore_index
    safe_labels = torch.where(keep, labels, torch.zeros_like(labels)).long()
    logp = log_probs.gather(1, safe_labels[:, None]).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    zero = torch.zeros_like(logp)
    return torch.where(keep, logp, zero), torch.where(keep, entropy, zero)


def naive_oreal_loss(hidden, weight, labels, *, coef_logp, coef_ratio, ref_logp, kl_coef, kl_type,
                     temperature=1.0, ignore_index=-100, dtype=None):
    """(loss, logp, kl, entropy) of the loss documented in api.fused_oreal_loss, through autograd."""
    logp, entropy = naive_token_logprobs(hidden, weight, labels, temperature=temperature,
                                         ignore_index=ignore_index, dtype=dtype)
    keep = labels != ignore_index
    kl_values = torch.where(keep, kl.kl_value(logp, ref_logp.to(logp.dtype), kl_type), torch.zeros_like(logp))
    ratio = torch.exp(logp - logp.detach())
    per_token = coef_logp * logp + coef_ratio * ratio + kl_coef * kl_values
    loss = torch.where(keep, per_token, torch.zeros_like(per_token)).sum()
    return loss, logp.detach(), kl_values.detach(), entropy.detach()
