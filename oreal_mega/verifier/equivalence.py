"""Decide whether a predicted answer equals the gold answer: shape by shape, fast path before sympy."""
import re
from fractions import Fraction

from oreal_mega.verifier import symbolic
from oreal_mega.verifier.caching import short_args_cache
from oreal_mega.verifier.normalize import normalize_answer
from oreal_mega.verifier.numeric import numbers_match, parse_number
from oreal_mega.verifier.structure import Choice, Equation, Matrix, Scalar, Sequence, Union, is_name, parse_structure

REL_TOL = Fraction(1, 10**6)  # relative tolerance for non-integer golds; integer golds are exact
_WORD = re.compile(r"[A-Za-z][A-Za-z '\-]+[A-Za-z]")
_CHOICE_PREFIX = re.compile(r"\(?([A-E])(?:\)|:|\.|$)")


def _is_word(text: str) -> bool:
    return _WORD.fullmatch(text) is not None


def scalars_equal(pred: str, gold: str) -> bool:
    if pred == gold:
        return True
    if _is_word(gold) or _is_word(pred):
        return pred.lower().replace(" ", "") == gold.lower().replace(" ", "")
    gold_number = parse_number(gold)
    pred_number = parse_number(pred)
    if gold_number and pred_number:
        return numbers_match(pred_number, gold_number, REL_TOL)
    pred_expr, gold_expr = symbolic.to_sympy(pred), symbolic.to_sympy(gold)
    if pred_expr is None or gold_expr is None:
        return False
    exact = gold_number is not None and gold_number.value.denominator == 1 and not gold_number.percent
    return symbolic.expressions_equal(pred_expr, gold_expr, exact=exact, rel_tol=float(REL_TOL))


def _equations_equal(pred: Equation, gold: Equation) -> bool:
    if is_name(pred.lhs) and is_name(gold.lhs):
        return pred.lhs == gold.lhs and answers_match(pred.rhs, gold.rhs)
    if not (isinstance(pred.rhs, Scalar) and isinstance(gold.rhs, Scalar)):
        return False
    sides = [symbolic.to_sympy(text) for text in (pred.lhs, pred.rhs_text, gold.lhs, gold.rhs_text)]
    if any(side is None for side in sides):
        return False
    return symbolic.proportional(sides[0] - sides[1], sides[2] - sides[3])


def _ordered_match(preds, golds) -> bool:
    return len(preds) == len(golds) and all(answers_match(p, g) for p, g in zip(preds, golds))


def _unordered_match(preds, golds) -> bool:
    """Every gold item matched by a distinct pred item (greedy; equality is an equivalence)."""
    if len(preds) != len(golds):
        return False
    unused = list(preds)
    for gold in golds:
        found = next((i for i, pred in enumerate(unused) if answers_match(pred, gold)), None)
        if found is None:
            return False
        unused.pop(found)
    return True


def _sequence_match(pred, gold: Sequence) -> bool:
    if gold.kind in ("set", "list"):
        if isinstance(pred, Sequence) and (pred.kind != "bracketed" or gold.kind == "list"):
            return _unordered_match(pred.items, gold.items)
        return False
    # bracketed: a tuple or an interval; ends must agree, items in order
    if isinstance(pred, Sequence):
        same_ends = (pred.left, pred.right) == (gold.left, gold.right)
        bare_tuple = pred.kind == "list" and (gold.left, gold.right) == ("(", ")")
        return (same_ends or bare_tuple) and _ordered_match(pred.items, gold.items)
    if isinstance(pred, Matrix) and pred.is_vector and (gold.left, gold.right) == ("(", ")"):
        return _ordered_match(pred.entries, gold.items)
    return False


def _matrix_match(pred, gold: Matrix) -> bool:
    if isinstance(pred, Matrix):
        if len(pred.rows) == len(gold.rows) and all(len(p) == len(g) for p, g in zip(pred.rows, gold.rows)):
            return _ordered_match(pred.entries, gold.entries)
        return gold.is_vector and pred.is_vector and _ordered_match(pred.entries, gold.entries)
    if isinstance(pred, Sequence) and pred.kind == "bracketed" and (pred.left, pred.right) == ("(", ")"):
        return gold.is_vector and _ordered_match(pred.items, gold.entries)
    return False


def answers_match(pred, gold) -> bool:
    """Structural match of two parsed answers (see structure.py)."""
    if isinstance(gold, Choice):
        if isinstance(pred, Choice):
            return pred.letter == gold.letter
        prefix = _CHOICE_PREFIX.match(pred.text) if isinstance(pred, Scalar) else None
        return prefix is not None and prefix.group(1) == gold.letter
    if isinstance(pred, Equation) and isinstance(gold, Equation):
        return _equations_equal(pred, gold)
    if isinstance(pred, Equation):  # x=3 is the answer 3
        return is_name(pred.lhs) and answers_match(pred.rhs, gold)
    if isinstance(gold, Equation):
        return is_name(gold.lhs) and answers_match(pred, gold.rhs)
    if isinstance(gold, Scalar):
        if isinstance(pred, Choice):
            return scalars_equal(f"({pred.letter})" if gold.text.startswith("(") else pred.letter, gold.text)
        return isinstance(pred, Scalar) and scalars_equal(pred.text, gold.text)
    if isinstance(gold, Sequence):
        return _sequence_match(pred, gold)
    if isinstance(gold, Union):
        return isinstance(pred, Union) and _unordered_match(pred.parts, gold.parts)
    if isinstance(gold, Matrix):
        return _matrix_match(pred, gold)
    return False


@short_args_cache()  # rollouts of one prompt often repeat the same answer
def answers_equal(pred: str, gold: str) -> bool:
    """True when the predicted answer string equals the gold answer string mathematically."""
    pred, gold = normalize_answer(pred), normalize_answer(gold)
    if pred == gold:
        return True
    return answers_match(parse_structure(pred), parse_structure(gold))
