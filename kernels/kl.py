"""Per-token KL estimators between the policy log-prob ℓ and the reference log-prob r, and dKL/dℓ.

Definitions follow OREAL's train_oreal.py (shared/docs/oreal-algorithm.md §1.2), with δ = r − ℓ:
  k3  ("unbias", default):  e^δ − δ − 1        dKL/dℓ = 1 − e^δ
  k1  ("kl"):               δ = r − ℓ           dKL/dℓ = −1   (OREAL's sign; the textbook k1 is ℓ − r)
  mse ("mse"):              δ²/2                dKL/dℓ = −δ
"""
import torch

KL_TYPES = ("k3", "k1", "mse")


def kl_value(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: str) -> torch.Tensor:
    delta = ref_logp - logp
    if kl_type == "k3":
        return torch.expm1(delta) - delta
    if kl_type == "k1":
        return delta
    if kl_type == "mse":
        return 0.5 * delta * delta
    raise ValueError(f"kl_type={kl_type!r}: expected one of {KL_TYPES}")


def kl_grad(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: str) -> torch.Tensor:
    """dKL/dlogp, elementwise."""
    delta = ref_logp - logp
    if kl_type == "k3":
        return -torch.expm1(delta)
    if kl_type == "k1":
        return torch.full_like(logp, -1.0)
    if kl_type == "mse":
        return -delta
    raise ValueError(f"kl_type={kl_type!r}: expected one of {KL_TYPES}")
