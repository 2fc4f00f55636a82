"""Shared inputs and float64 references for the kernels tests (no tests here)."""
import torch

from oreal_mega.kernels.reference import naive_token_logprobs

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rel_err(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    assert torch.isfinite(value).all(), "non-finite values"
    return float((value - reference).norm() / reference.norm())


def make_inputs(tokens, hidden_size, vocab, dtype, *, seed, device="cpu", n_ignored=3, scale=1.0):
    """Fresh random hidden, weight (rounded to dtype), labels with a few ignore_index entries."""
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(tokens, hidden_size, generator=gen) * scale).to(dtype)
    weight = (torch.randn(vocab, hidden_size, generator=gen) / hidden_size ** 0.5).to(dtype)
    labels = torch.randint(0, vocab, (tokens,), generator=gen)
    labels[torch.randperm(tokens, generator=gen)[:n_ignored]] = -100
    return hidden.to(device), weight.to(device), labels.to(device)


def reference_logprobs_and_grads(hidden, weight, labels, coef_logp, coef_entropy, temperature):
    """float64 logp, entropy and the gradients of Σ coef_logp·logp + coef_entropy·entropy."""
    h = hidden.detach().double().cpu().requires_grad_()
    w = weight.detach().double().cpu().requires_grad_()
    logp, entropy = naive_token_logprobs(h, w, labels.cpu(), temperature=temperature, dtype=torch.float64)
    ((coef_logp.double().cpu() * logp).sum() + (coef_entropy.double().cpu() * entropy).sum()).backward()
    return logp.detach(), entropy.detach(), h.grad, w.grad


def check_token_logprobs(backend, dtype, temperature, *, seed, device="cpu", tokens=53, hidden_size=32, vocab=333,
                         chunk_tokens=16):
    """token_logprobs(backend) vs float64: logp, entropy and both gradients, within TOLERANCE[dtype]."""
    from oreal_mega.kernels import token_logprobs

    hidden, weight, labels = make_inputs(tokens, hidden_size, vocab, dtype, seed=seed, device=device, scale=3.0)
    gen = torch.Generator().manual_seed(seed + 1)
    coef_logp, coef_entropy = torch.randn(2, tokens, generator=gen).to(device)
    ref = reference_logprobs_and_grads(hidden, weight, labels, coef_logp, coef_entropy, temperature)

    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logp, entropy = token_logprobs(h, w, labels, temperature=temperature, return_entropy=True, backend=backend,
                                   chunk_tokens=chunk_tokens)
    ((coef_logp * logp).sum() + (coef_entropy * entropy).sum()).backward()
    assert logp.dtype == entropy.dtype == torch.float32
    assert h.grad.dtype == dtype and w.grad.dtype == dtype
    ignored = labels == -100
    assert (logp[ignored] == 0).all() and (entropy[ignored] == 0).all() and (h.grad[ignored] == 0).all()
    tol = TOLERANCE[dtype]
    for name, value, reference in zip(("logp", "entropy", "grad_hidden", "grad_weight"),
                                      (logp, entropy, h.grad, w.grad), ref):
        err = rel_err(value, reference)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e} ({backend}, {dtype}, T={temperature})"


def reference_oreal_loss(logp, ref_logp, coef_logp, coef_ratio, kl_coef, kl_type):
    """The loss of fused_oreal_loss written out independently (OREAL code's KL estimators)."""
    delta = ref_logp - logp
    kl = {"k3": torch.exp(delta) - delta - 1, "k1": -delta, "mse": delta ** 2 / 2}[kl_type]
    return (coef_logp * logp + coef_ratio * torch.exp(logp - logp.detach()) + kl_coef * kl).sum(), kl


def check_fused_loss(backend, dtype, kl_type, *, seed, device="cpu", tokens=45, hidden_size=24, vocab=301,
                     temperature=0.8, chunk_tokens=16, grad_scale=2.5):
    """fused_oreal_loss(backend) vs the loss composed in float64 from reference log-probs with autograd."""
    from oreal_mega.kernels import fused_oreal_loss

    hidden, weight, labels = make_inputs(tokens, hidden_size, vocab, dtype, seed=seed, device=device, scale=2.0)
    gen = torch.Generator().manual_seed(seed + 1)
    coef_logp, coef_ratio, kl_coef = torch.randn(3, tokens, generator=gen)
    kl_coef = kl_coef.abs()
    keep = labels.cpu() != -100
    h64 = hidden.detach().double().cpu().requires_grad_()
    w64 = weight.detach().double().cpu().requires_grad_()
    logp64, entropy64 = naive_token_logprobs(h64, w64, labels.cpu(), temperature=temperature, dtype=torch.float64)
    ref_logp = (logp64.detach() + 0.3 * torch.randn(tokens, generator=gen, dtype=torch.float64)).float()
    loss64, kl64 = reference_oreal_loss(logp64[keep], ref_logp[keep].double(), coef_logp[keep].double(),
                                        coef_ratio[keep].double(), kl_coef[keep].double(), kl_type)
    (grad_scale * loss64).backward()

    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, diag = fused_oreal_loss(h, w, labels, coef_logp=coef_logp.to(device), coef_ratio=coef_ratio.to(device),
                                  ref_logp=ref_logp.to(device), kl_coef=kl_coef.to(device), kl_type=kl_type,
                                  temperature=temperature, backend=backend, chunk_tokens=chunk_tokens)
    (grad_scale * loss).backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert not (diag.logp.requires_grad or diag.kl.requires_grad or diag.entropy.requires_grad)
    ignored = labels == -100
    assert (diag.kl[ignored] == 0).all() and (h.grad[ignored] == 0).all()
    kl_full = torch.zeros(tokens, dtype=torch.float64)
    kl_full[keep] = kl64.detach()
    tol = TOLERANCE[dtype]
    # the loss sums terms of both signs: bound its error by the summands' size, not by the (cancelled) sum
    summands = (coef_logp[keep].double() * logp64[keep]).abs().sum() + coef_ratio[keep].double().abs().sum() \
        + (kl_coef[keep].double() * kl64).abs().sum()
    loss_err = (loss.double().cpu() - loss64).abs().item() / summands.item()
    assert loss_err <= tol, f"loss: error {loss_err:.2e} of the summands' size > {tol:.0e} ({backend}, {dtype}, {kl_type})"
    checks = {"logp": (diag.logp, logp64), "kl": (diag.kl, kl_full),
              "entropy": (diag.entropy, entropy64), "grad_hidden": (h.grad, h64.grad),
              "grad_weight": (w.grad, w64.grad)}
    for name, (value, reference) in checks.items():
        err = rel_err(value, reference)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e} ({backend}, {dtype}, {kl_type})"
