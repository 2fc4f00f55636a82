"""One response, one reward: `verify(response, gold)` -> Verdict."""
from dataclasses import dataclass

from oreal_mega.verifier.equivalence import answers_equal
from oreal_mega.verifier.extract import final_answer

STATUSES = ("correct", "wrong", "no_answer", "truncated", "timeout", "error")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    status: str  # one of STATUSES
    pred: str | None  # the extracted answer (None when there was none)
    message: str = ""  # why, for `error` and `timeout` (and the model judge's failures)
    source: str = "rules"  # "judge" when the optional model judge turned a rule-rejected answer into correct


def verify(response: str, gold: str, *, finished: bool = True, fallback: str = "none") -> Verdict:
    """Judge one response against its gold answer. Never raises on odd content: failures become `error`.
    `fallback` (extract.FALLBACKS): what a response without an explicit answer is judged on."""
    if not isinstance(response, str) or not isinstance(gold, str):
        raise TypeError(f"response and gold must be str, got {type(response).__name__}, {type(gold).__name__}")
    pred = final_answer(response, fallback)
    if not finished:
        return Verdict(False, "truncated", pred)
    if pred is None:
        return Verdict(False, "no_answer", None)
    try:
        correct = answers_equal(pred, gold)
    except Exception as err:  # reported as status "error" with its message, never swallowed silently
        return Verdict(False, "error", pred, f"{type(err).__name__}: {err}")
    return Verdict(correct, "correct" if correct else "wrong", pred)
