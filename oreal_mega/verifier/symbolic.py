"""Slow path: compare answers as sympy expressions -- structural check first, then numeric sampling."""
import functools
import math

import sympy

from oreal_mega.verifier.caching import short_args_cache
from oreal_mega.verifier.latex_parser import MAX_DIGITS, LatexParseError, TooLarge, Undefined, parse_latex

MAX_SYMPY_CHARS = 1_000  # longer answers are compared as strings only
MAX_FALLBACK_CHARS = 300  # the ANTLR-based fallback parser is slow on long inputs
MAX_EXPAND_OPS = 60  # expand() only small expressions; sampling decides the rest
MAX_EXPAND_POWER = 12
PRECISION = 30  # significant digits for numeric evaluation
EXACT_TOLERANCE = sympy.Float("1e-20", PRECISION)  # "exactly equal" at PRECISION digits
# Irrational-looking sample values, each symbol gets a different one per point, so that
# coincidental agreement of different expressions is (practically) impossible.
_SAMPLE_VALUES = (0.5772156649015329, 1.2020569031595942, 0.9159655941772190, 1.6180339887498949,
                  2.6854520010653064, 0.6931471805599453, 1.4142135623730951, 2.2360679774997897)
_SAMPLE_POINTS = 3
_NUMERIC_NODES = (sympy.Float, sympy.Rational, sympy.core.numbers.ImaginaryUnit, sympy.Add, sympy.Mul)


@functools.cache
def _fallback_parser():
    """latex2sympy2_extended, imported only when our own parser cannot read an answer."""
    from latex2sympy2_extended import latex2sympy
    return latex2sympy


def _log10_bound(expr) -> float:
    """Rough upper bound of log10|expr| for a numeric expression, without evaluating it."""
    if expr.is_Rational:
        return float(max(len(str(abs(expr.p))), len(str(expr.q))))
    if isinstance(expr, sympy.Pow):
        exponent_digits = _log10_bound(expr.exp)
        return math.inf if exponent_digits > 300 else _log10_bound(expr.base) * 10 ** exponent_digits
    if isinstance(expr, sympy.factorial):
        argument_digits = _log10_bound(expr.args[0])
        return math.inf if argument_digits > 300 else argument_digits * 10 ** argument_digits
    return 1.0 + sum(_log10_bound(arg) for arg in expr.args)


def _too_large(expr) -> bool:
    """True when evaluating `expr` exactly could need more than MAX_DIGITS digits (e.g. power towers)."""
    return any(isinstance(node, (sympy.Pow, sympy.factorial)) and node.is_number and _log10_bound(node) > MAX_DIGITS
               for node in sympy.preorder_traversal(expr))


def _from_fallback(text: str):
    expr = _fallback_parser()(text)
    if isinstance(expr, (list, tuple)) or not isinstance(expr, sympy.Basic):
        return None
    replacements = {sympy.Symbol("i"): sympy.I, sympy.Symbol("e"): sympy.E}
    expr = expr.xreplace(replacements)
    if _too_large(expr):
        return None
    if expr.has(sympy.Limit, sympy.Sum, sympy.Product, sympy.Integral):
        expr = expr.doit()  # may be slow; the pool's timeout bounds it
    return expr


def _defined(expr):
    """None for a value that is undefined or not a number (1/0, tan(pi/2), 0/0, oo - oo): it equals nothing."""
    if isinstance(expr, sympy.Basic) and expr.has(sympy.zoo, sympy.nan):
        return None
    return expr


@short_args_cache()
def to_sympy(text: str):
    """sympy object for a LaTeX scalar (or matrix expression), or None when it cannot be read, is undefined, or is
    too large to evaluate safely."""
    if len(text) > MAX_SYMPY_CHARS:
        return None
    try:
        return _defined(parse_latex(text))
    except (TooLarge, Undefined):
        return None
    except LatexParseError:
        pass
    if len(text) > MAX_FALLBACK_CHARS:
        return None
    try:
        return _defined(_from_fallback(text))
    except Exception:  # the fallback signals unreadable input with bare Exceptions
        return None


def _evaluate(expr, values: dict, precision: int = PRECISION):
    try:
        value = expr.xreplace({symbol: sympy.Float(v, precision) for symbol, v in values.items()}).evalf(precision)
    except (TypeError, ValueError, AttributeError, ArithmeticError):  # sympy cannot evaluate it numerically
        return None
    # a usable value is a finite complex number; evalf leaves unevaluable parts (integrals, nan, oo) in place
    if not all(isinstance(node, _NUMERIC_NODES) for node in sympy.preorder_traversal(value)):
        return None
    return value


def _close(pred_value, gold_value, rel_tol) -> bool:
    difference = abs(sympy.N(pred_value - gold_value, PRECISION))
    return bool(difference <= rel_tol * abs(gold_value))


def _exactly_equal_constants(pred, gold) -> bool:
    """pred == gold for constant expressions, to within far below one unit of the gold's last digit."""
    if pred.is_Rational and gold.is_Rational:
        return pred == gold
    gold_digits = int(_log10_bound(gold)) if gold.is_Rational else 0
    precision = PRECISION + gold_digits
    pred_value, gold_value = _evaluate(pred, {}, precision), _evaluate(gold, {}, precision)
    if pred_value is None or gold_value is None:
        return False
    return bool(abs(sympy.N(pred_value - gold_value, precision)) <= EXACT_TOLERANCE)


def _sample_points(symbols) -> list[dict]:
    ordered = sorted(symbols, key=lambda symbol: symbol.name)
    return [{symbol: _SAMPLE_VALUES[(point * 3 + index) % len(_SAMPLE_VALUES)] for index, symbol in enumerate(ordered)}
            for point in range(_SAMPLE_POINTS)]


def _differ_at_negative_point(pred, gold, symbols, rel_tol) -> bool:
    """True when both sides are real but different with every symbol negative: `|x|` and `\\sqrt{x^2}` are not `x`.

    The positive sample points cannot tell them apart. A point where either side is complex (`x^{2/3}` under
    sympy's principal branch) or undefined proves nothing and is skipped.
    """
    values = {symbol: -value for symbol, value in _sample_points(symbols)[0].items()}
    pred_value, gold_value = _evaluate(pred, values), _evaluate(gold, values)
    if pred_value is None or gold_value is None or not (pred_value.is_real and gold_value.is_real):
        return False
    return not _close(pred_value, gold_value, rel_tol)


def _cheap_to_expand(expr) -> bool:
    """Small, and no high powers: (x+2)^{100000} would expand for ever, sampling handles it instead."""
    if sympy.count_ops(expr) > MAX_EXPAND_OPS:
        return False
    return all(not (isinstance(node, sympy.Pow) and node.exp.is_Integer and abs(node.exp) > MAX_EXPAND_POWER)
               for node in sympy.preorder_traversal(expr))


def expressions_equal(pred, gold, *, exact: bool, rel_tol: float) -> bool:
    """pred == gold as mathematical expressions: structural check (expand), then numeric sampling.

    `exact` (the gold is an exact integer) makes constants match exactly instead of within `rel_tol`.
    """
    if isinstance(pred, sympy.MatrixBase) or isinstance(gold, sympy.MatrixBase):
        return matrices_equal(pred, gold, exact=exact, rel_tol=rel_tol)
    if pred == gold:
        return True
    if not (isinstance(pred, sympy.Expr) and isinstance(gold, sympy.Expr)):
        return False
    if pred.has(sympy.oo, -sympy.oo, sympy.zoo) or gold.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False  # infinities are equal only structurally, checked above
    symbols = pred.free_symbols | gold.free_symbols
    if not symbols and exact:
        return _exactly_equal_constants(pred, gold)
    if symbols and _cheap_to_expand(pred) and _cheap_to_expand(gold):
        if sympy.expand(pred - gold) == 0:
            return True
    agreeing = 0
    for values in _sample_points(symbols) if symbols else [{}]:
        pred_value, gold_value = _evaluate(pred, values), _evaluate(gold, values)
        if pred_value is None or gold_value is None:
            continue
        if not _close(pred_value, gold_value, rel_tol):
            return False
        agreeing += 1
    if symbols and agreeing >= 2 and _differ_at_negative_point(pred, gold, symbols, rel_tol):
        return False
    return agreeing >= (2 if symbols else 1)


def matrices_equal(pred, gold, *, exact: bool, rel_tol: float) -> bool:
    """Same shape and equal entries; a column or row vector also equals the other orientation."""
    if not (isinstance(pred, sympy.MatrixBase) and isinstance(gold, sympy.MatrixBase)):
        return False
    if pred.shape != gold.shape and not (1 in pred.shape and 1 in gold.shape and len(pred) == len(gold)):
        return False
    return all(expressions_equal(p, g, exact=exact, rel_tol=rel_tol) for p, g in zip(pred, gold))


def constant_ratio(pred, gold):
    """c when pred == c * gold for a nonzero constant c (sampled), else None: how `lhs - rhs` forms are compared."""
    if not (isinstance(pred, sympy.Expr) and isinstance(gold, sympy.Expr)) or isinstance(pred, sympy.MatrixBase) \
            or isinstance(gold, sympy.MatrixBase):
        return None
    symbols = pred.free_symbols | gold.free_symbols
    ratios = []
    for values in _sample_points(symbols):
        pred_value, gold_value = _evaluate(pred, values), _evaluate(gold, values)
        if pred_value is None or gold_value is None or gold_value == 0 or pred_value == 0:
            continue
        ratios.append(pred_value / gold_value)
    if len(ratios) >= 2 and all(_close(ratio, ratios[0], 1e-9) for ratio in ratios[1:]):
        return ratios[0]
    return None


_FLIPPED = {">": "<", "\\geq": "\\leq"}


def relations_equal(pred: tuple, gold: tuple) -> bool:
    """(lhs, relation, rhs) triples of sympy sides: equal up to rearrangement (`-x \\geq -1` is `x \\leq 1`).

    Both become `lhs - rhs REL 0` with REL one of <, \\leq, =, \\neq; the differences must be proportional, by a
    positive factor for inequalities (a negative one would flip the relation).
    """
    (pred_difference, pred_relation), (gold_difference, gold_relation) = map(_difference_form, (pred, gold))
    if pred_relation != gold_relation:
        return False
    ratio = constant_ratio(pred_difference, gold_difference)
    if ratio is None or not ratio.is_real:
        return False
    return ratio > 0 if pred_relation in ("<", "\\leq") else True


def _difference_form(relation: tuple):
    lhs, operator, rhs = relation
    if operator in _FLIPPED:
        return rhs - lhs, _FLIPPED[operator]
    return lhs - rhs, operator
