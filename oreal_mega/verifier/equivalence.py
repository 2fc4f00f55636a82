"""Decide whether a predicted answer equals the gold answer: shape by shape, fast path before sympy."""
import re
from fractions import Fraction

import sympy

from oreal_mega.verifier import symbolic
from oreal_mega.verifier.caching import short_args_cache
from oreal_mega.verifier.extract import answer_text
from oreal_mega.verifier.normalize import normalize_with_unit
from oreal_mega.verifier.numeric import numbers_match, parse_number
from oreal_mega.verifier.structure import (Choice, Equation, Matrix, Ratio, Relation, Scalar, Sequence, Union,
                                           interval_of, is_label, parse_structure)

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
    if is_label(pred.lhs) and is_label(gold.lhs):
        return pred.lhs == gold.lhs and answers_match(pred.rhs, gold.rhs)
    if not (isinstance(pred.rhs, Scalar) and isinstance(gold.rhs, Scalar)):
        return False
    sides = [symbolic.to_sympy(text) for text in (pred.lhs, pred.rhs_text, gold.lhs, gold.rhs_text)]
    if any(side is None for side in sides):
        return False
    return symbolic.constant_ratio(sides[0] - sides[1], sides[2] - sides[3]) is not None


def _relations_equal(pred: Relation, gold: Relation) -> bool:
    sides = [symbolic.to_sympy(text) for text in (pred.lhs, pred.rhs, gold.lhs, gold.rhs)]
    if any(side is None or isinstance(side, sympy.MatrixBase) for side in sides):
        return False
    return symbolic.relations_equal((sides[0], pred.relation, sides[1]), (sides[2], gold.relation, sides[3]))


def _clock_minutes(clock: tuple) -> tuple:
    hours, minutes, seconds, meridiem = clock
    if meridiem:
        hours = hours % 12 + (12 if meridiem == "pm" else 0)
    return hours, minutes, seconds


def _times_equal(pred: tuple, gold: tuple) -> bool:
    """Clock times: `1:00 pm` is 13:00; a time without am/pm also matches the same 12-hour reading."""
    if _clock_minutes(pred) == _clock_minutes(gold):
        return True
    return bool(pred[3]) != bool(gold[3]) and pred[:3] == gold[:3]


def _ratios_equal(pred: Ratio, gold: Ratio) -> bool:
    """Times as times; ratios part by part, or proportional (`2:4` is `1:2`) when no part is zero and neither side
    reads as a clock time."""
    if pred.clock and gold.clock:
        return _times_equal(pred.clock, gold.clock)
    if len(pred.parts) != len(gold.parts):
        return False
    if all(scalars_equal(p, g) for p, g in zip(pred.parts, gold.parts)):
        return True
    if pred.clock or gold.clock:
        return False
    pred_numbers, gold_numbers = [parse_number(p) for p in pred.parts], [parse_number(g) for g in gold.parts]
    if not all(number and number.value > 0 and not number.percent for number in pred_numbers + gold_numbers):
        return False
    return len({p.value / g.value for p, g in zip(pred_numbers, gold_numbers)}) == 1


def _ratio_matches_scalar(ratio: Ratio, scalar: Scalar) -> bool:
    """`3:4` and `\\frac{3}{4}` (a two-part ratio that is not a time, read as a quotient)."""
    if ratio.clock or len(ratio.parts) != 2:
        return False
    return scalars_equal(scalar.text, f"\\frac{{{ratio.parts[0]}}}{{{ratio.parts[1]}}}")


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


def _set_match(preds, golds) -> bool:
    """Solutions as a set: a repeated solution counts once -- unless the gold itself repeats one (a multiset)."""
    distinct_golds = tuple(dict.fromkeys(golds))
    if len(distinct_golds) < len(golds):
        return _unordered_match(preds, golds)
    return _unordered_match(tuple(dict.fromkeys(preds)), golds)


def _labels(sequence) -> list[str] | None:
    """The labels of a list whose items are all labelled values with distinct labels (`AB=4, CD=5`), else None."""
    if not (isinstance(sequence, Sequence) and sequence.kind == "list"):
        return None
    if not all(isinstance(item, Equation) and is_label(item.lhs) for item in sequence.items):
        return None
    labels = [item.lhs for item in sequence.items]
    return labels if len(set(labels)) == len(labels) else None


def _record_match(pred, gold: Sequence) -> bool:
    """A gold of labelled values: labelled preds match label by label, bare values in the gold's order."""
    if _labels(pred) is not None:
        by_label = {item.lhs: item for item in pred.items}
        return by_label.keys() == {item.lhs for item in gold.items} and all(
            answers_match(by_label[item.lhs].rhs, item.rhs) for item in gold.items)
    if isinstance(pred, Sequence) and (pred.kind == "list" or (pred.left, pred.right) == ("(", ")")):
        return _ordered_match(pred.items, gold.items)
    return False


def _sequence_match(pred, gold: Sequence) -> bool:
    if _labels(gold) is not None:
        return _record_match(pred, gold)
    if gold.kind in ("set", "list"):
        if isinstance(pred, Sequence) and (pred.kind != "bracketed" or gold.kind == "list"):
            return _set_match(pred.items, gold.items)
        return False
    # bracketed: a tuple or an interval; ends must agree, items in order
    if isinstance(pred, Sequence):
        same_ends = (pred.left, pred.right) == (gold.left, gold.right)
        bare_tuple = pred.kind == "list" and (gold.left, gold.right) == ("(", ")")
        return (same_ends or bare_tuple) and _ordered_match(pred.items, gold.items)
    if isinstance(pred, Matrix) and pred.is_vector and (gold.left, gold.right) == ("(", ")"):
        return _ordered_match(pred.entries, gold.items)
    return False


def _matrix_value(answer):
    """A sympy matrix for a Matrix shape or a scalar matrix expression (`A + B`, `2A`), else None."""
    if isinstance(answer, Matrix):
        if len({len(row) for row in answer.rows}) != 1 or not all(isinstance(e, Scalar) for e in answer.entries):
            return None
        entries = [[symbolic.to_sympy(entry.text) for entry in row] for row in answer.rows]
        if any(entry is None or isinstance(entry, sympy.MatrixBase) for row in entries for entry in row):
            return None
        return sympy.ImmutableMatrix(entries)
    if isinstance(answer, Scalar) and "\\begin" in answer.text:
        value = symbolic.to_sympy(answer.text)
        return value if isinstance(value, sympy.MatrixBase) else None
    return None


def _matrix_values_equal(pred, gold) -> bool:
    pred_value, gold_value = _matrix_value(pred), _matrix_value(gold)
    if pred_value is None or gold_value is None:
        return False
    return symbolic.matrices_equal(pred_value, gold_value, exact=False, rel_tol=float(REL_TOL))


def _matrix_match(pred, gold: Matrix) -> bool:
    if isinstance(pred, Matrix):
        if len(pred.rows) == len(gold.rows) and all(len(p) == len(g) for p, g in zip(pred.rows, gold.rows)):
            return _ordered_match(pred.entries, gold.entries)
        return gold.is_vector and pred.is_vector and _ordered_match(pred.entries, gold.entries)
    if isinstance(pred, Sequence) and pred.kind == "bracketed" and (pred.left, pred.right) == ("(", ")"):
        return gold.is_vector and _ordered_match(pred.items, gold.entries)
    return _matrix_values_equal(pred, gold)


def _relation_match(pred, gold) -> bool:
    """Relations with relations (up to rearrangement); a one-sided condition on a name also as its interval."""
    if isinstance(pred, Relation) and isinstance(gold, Relation):
        return _relations_equal(pred, gold)
    pred = interval_of(pred) if isinstance(pred, Relation) else pred
    gold = interval_of(gold) if isinstance(gold, Relation) else gold
    return pred is not None and gold is not None and answers_match(pred, gold)


def answers_match(pred, gold) -> bool:
    """Structural match of two parsed answers (see structure.py)."""
    if isinstance(gold, Choice):
        if isinstance(pred, Choice):
            return pred.letter == gold.letter
        prefix = _CHOICE_PREFIX.match(pred.text) if isinstance(pred, Scalar) else None
        return prefix is not None and prefix.group(1) == gold.letter
    if isinstance(pred, Relation) or isinstance(gold, Relation):
        return _relation_match(pred, gold)
    if isinstance(pred, Equation) and isinstance(gold, Equation):
        return _equations_equal(pred, gold)
    if isinstance(pred, Equation):  # x=3 is the answer 3, (p,q)=(3,2) is (3,2)
        return is_label(pred.lhs) and answers_match(pred.rhs, gold)
    if isinstance(gold, Equation):
        return is_label(gold.lhs) and answers_match(pred, gold.rhs)
    if isinstance(gold, Ratio) or isinstance(pred, Ratio):
        if isinstance(gold, Ratio) and isinstance(pred, Ratio):
            return _ratios_equal(pred, gold)
        ratio, other = (gold, pred) if isinstance(gold, Ratio) else (pred, gold)
        return isinstance(other, Scalar) and _ratio_matches_scalar(ratio, other)
    if isinstance(gold, Scalar):
        if isinstance(pred, Choice):
            return scalars_equal(f"({pred.letter})" if gold.text.startswith("(") else pred.letter, gold.text)
        if isinstance(pred, Matrix) or (isinstance(pred, Scalar) and "\\begin" in gold.text):
            return _matrix_values_equal(pred, gold)
        return isinstance(pred, Scalar) and scalars_equal(pred.text, gold.text)
    if isinstance(gold, Sequence):
        return _sequence_match(pred, gold)
    if isinstance(gold, Union):
        return isinstance(pred, Union) and _unordered_match(pred.parts, gold.parts)
    if isinstance(gold, Matrix):
        return _matrix_match(pred, gold)
    return False


def _radians_match_degrees(pred: str, gold: str) -> bool:
    """A gold in degrees (`30^\\circ`) and a prediction in radians (`\\frac{\\pi}{6}`)."""
    return scalars_equal(f"({pred})\\cdot\\frac{{180}}{{\\pi}}", gold)


@short_args_cache()  # rollouts of one prompt often repeat the same answer
def answers_equal(pred: str, gold: str) -> bool:
    """True when the predicted answer string equals the gold answer string mathematically. A whole solution on
    either side (with a box, or long) is read for its final answer first (`extract.answer_text`).

    Units: two different known units never match (`5\\text{ cm}` vs `5\\text{ m}`); a unit on one side only is
    ignored. The gold decides degrees vs radians: a gold in degrees accepts the same angle in radians, a gold in
    radians refuses a prediction marked in degrees.
    """
    (pred, pred_unit), (gold, gold_unit) = (normalize_with_unit(answer_text(text)) for text in (pred, gold))
    if pred_unit and gold_unit and pred_unit != gold_unit:
        return False
    if pred_unit == "degree" and gold_unit is None and "\\pi" in gold:
        return False
    if pred == gold:
        return True
    pred_shape, gold_shape = parse_structure(pred), parse_structure(gold)
    if answers_match(pred_shape, gold_shape):
        return True
    if gold_unit == "degree" and pred_unit is None and "\\pi" in pred:
        return isinstance(pred_shape, Scalar) and isinstance(gold_shape, Scalar) and _radians_match_degrees(pred, gold)
    return False
