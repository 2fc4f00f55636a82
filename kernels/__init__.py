"""Fused LM-head kernels (importable as oreal_mega.kernels): token log-probs, entropy, KL and the
token-weighted OREAL loss straight from hidden states, vocab-parallel, one chunk of logits at a time.
See kernels/README.md."""
from .api import BACKENDS, OrealLossDiagnostics, fused_oreal_loss, token_logprobs
from .kl import KL_TYPES, kl_value

__all__ = ["BACKENDS", "KL_TYPES", "kl_value", "OrealLossDiagnostics", "fused_oreal_loss", "token_logprobs"]
