"""`verifier.backend: math-verify`: HuggingFace math-verify's extraction and comparison, called as verl's
`math_verify` reward calls it, behind our Verdict type and VerifierPool.

The gold is read as `\\boxed{gold}` with math-verify's LaTeX extraction, the response with its expression and
LaTeX extraction (which falls back to the last expression it finds), then `math_verify.verify(gold, pred)`.
math-verify's own signal-based timeouts are switched off (they fail outside a main thread): the pool's per-item
timeout and kill bound every call instead, so a hang is a `timeout` verdict here too. Install:
`pip install -e ".[math-verify]"`.
"""
import importlib.util
import logging

from oreal_mega.errors import UserError
from oreal_mega.verifier.verdict import Verdict

INSTALL_HINT = 'pip install -e ".[math-verify]"  (or: pip install "math-verify==0.9.0")'


def available() -> bool:
    return importlib.util.find_spec("math_verify") is not None


def require() -> None:
    """A UserError (before any worker starts) when math-verify is not installed."""
    if not available():
        raise UserError(f"the math-verify backend needs the math-verify package: {INSTALL_HINT}")


def _math_verify():
    import math_verify
    # it warns once per process that timeouts are off; here the pool's kill is the timeout
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return math_verify


def verify_math_verify(response: str, gold: str, *, finished: bool = True) -> Verdict:
    """Judge one response with math-verify; statuses as `verdict.verify` (`error` when the gold is unreadable)."""
    if not isinstance(response, str) or not isinstance(gold, str):
        raise TypeError(f"response and gold must be str, got {type(response).__name__}, {type(gold).__name__}")
    math_verify = _math_verify()
    parsed_pred = math_verify.parse(response, [math_verify.ExprExtractionConfig(), math_verify.LatexExtractionConfig()],
                                    parsing_timeout=None)
    pred = str(parsed_pred[-1]) if parsed_pred else None
    if not finished:
        return Verdict(False, "truncated", pred)
    if not parsed_pred:
        return Verdict(False, "no_answer", None)
    parsed_gold = math_verify.parse(f"\\boxed{{{gold}}}", [math_verify.LatexExtractionConfig()], parsing_timeout=None)
    if not parsed_gold:
        return Verdict(False, "error", pred, f"math-verify could not read the gold answer {gold[:100]!r}")
    try:
        correct = math_verify.verify(parsed_gold, parsed_pred, timeout_seconds=None)
    except Exception as err:  # reported as status "error", as in verdict.verify
        return Verdict(False, "error", pred, f"{type(err).__name__}: {err}")
    return Verdict(correct, "correct" if correct else "wrong", pred)
