"""Which verifier judges: `verifier.backend` (oreal | math-verify) and `verifier.fallback` (none | last_number).

`verify_function` gives the per-item function a VerifierPool runs in its workers (module-level or a partial of
one, so that spawn can pickle it); every backend returns the same Verdict statuses.
"""
import functools

from oreal_mega.errors import UserError
from oreal_mega.verifier import math_verify_backend
from oreal_mega.verifier.extract import FALLBACKS
from oreal_mega.verifier.verdict import verify

BACKENDS = ("oreal", "math-verify")
DEFAULT_FALLBACK = "none"  # chosen by measurement: `oreal-mega bench verifier --labelled` (see verifier/README.md)


def check_choice(backend: str, fallback: str, source: str = "config") -> None:
    """A one-line UserError naming the key and `source` for an unknown backend or fallback, or a backend that is
    not installed."""
    if backend not in BACKENDS:
        raise UserError(f"verifier.backend in {source}: {backend!r} is not one of {', '.join(BACKENDS)}")
    if fallback not in FALLBACKS:
        raise UserError(f"verifier.fallback in {source}: {fallback!r} is not one of {', '.join(FALLBACKS)}")
    if backend == "math-verify":
        if fallback != "none":
            raise UserError(f"verifier.fallback in {source}: {fallback!r} applies to the oreal backend only "
                            "(math-verify always falls back to the last expression it finds); use 'none'")
        try:
            math_verify_backend.require()
        except UserError as err:
            raise UserError(f"verifier.backend in {source}: {err}") from None


def verify_function(backend: str = "oreal", fallback: str = DEFAULT_FALLBACK):
    """The function `(response, gold, *, finished) -> Verdict` of a backend and fallback (checked first)."""
    check_choice(backend, fallback)
    if backend == "math-verify":
        return math_verify_backend.verify_math_verify
    return verify if fallback == "none" else functools.partial(verify, fallback=fallback)
