"""Per-token KL estimators between the policy log-prob ℓ and the reference log-prob r, and dKL/dℓ.

With δ = r − ℓ (oreal_mega/objective/ALGORITHM.md, term (c)):
  k3  ("unbias", the default):  e^δ − δ − 1        dKL/dℓ = 1 − e^δ
  k1:                           ℓ − r = −δ          dKL/dℓ = 1
  mse:                          δ²/2                dKL/dℓ = −δ
k1 is the textbook estimator, whose mean under π is KL(π‖π_ref). The reference code's "kl" option
adds +δ instead, which as a loss pushes the policy away from the reference; that sign is a bug we
do not reproduce.
"""
import torch

KL_TYPES = ("k3", "k1", "mse")


def kl_value(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: str) -> torch.Tensor:
    delta = ref_logp - logp
    if kl_type == "k3":
        return torch.expm1(delta) - delta
    if kl_type == "k1":
        return -delta
    if kl_type == "mse":
        return 0.5 * delta * delta
    raise ValueError(f"kl_type={kl_type!r}: expected one of {KL_TYPES}")


def kl_grad(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: str) -> torch.Tensor:
    """dKL/dlogp, elementwise."""
    delta = ref_logp - logp
    if kl_type == "k3":
        return -torch.expm1(delta)
    if kl_type == "k1":
        return torch.ones_like(logp)
    if kl_type == "mse":
        return -delta
    raise ValueError(f"kl_type={kl_type!r}: expected one of {KL_TYPES}")
