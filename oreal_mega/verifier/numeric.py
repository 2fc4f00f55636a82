"""Fast path: read plain numbers (integers, decimals, fractions, scientific notation, percentages) exactly."""
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPONENT = 400  # 10^n with a larger |n| goes to the guarded sympy path instead
MAX_LITERAL_DIGITS = 4_000  # Python refuses to parse longer integer strings by default

_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)"
_INTEGER = r"\d+"
_PATTERNS = [
    ("plain", re.compile(_UNSIGNED)),
    ("e_notation", re.compile(rf"({_UNSIGNED})[eE]([-+]?\d+)")),
    ("times_ten", re.compile(rf"(?:({_UNSIGNED})(?:\\times|\\cdot|\*))?10\^(?:\{{([-+]?\d+)\}}|(\d))")),
    ("frac", re.compile(rf"\\frac(?:\{{(-?{_UNSIGNED})\}}|(\d))(?:\{{(-?{_UNSIGNED})\}}|(\d))")),
    ("slash", re.compile(rf"({_UNSIGNED})/({_UNSIGNED})")),
    ("mixed", re.compile(rf"({_INTEGER})\\frac(?:\{{({_INTEGER})\}}|(\d))(?:\{{({_INTEGER})\}}|(\d))")),
    # 0.1\overline{6}, 0.1\dot{6}, 0.1(6): the digits in the group repeat for ever
    ("repeating", re.compile(r"(\d*)\.(\d*)(?:\\overline\{(\d+)\}|\\dot\{?(\d)\}?|\((\d+)\))")),
]


@dataclass(frozen=True)
class Number:
    value: Fraction
    percent: bool  # written with a % sign: the value may be meant as value or value/100


def _scaled(mantissa: str | None, exponent: str) -> Fraction | None:
    power = int(exponent)
    if abs(power) > MAX_EXPONENT:
        return None
    return Fraction(mantissa or 1) * Fraction(10) ** power


def _read(kind: str, match: re.Match) -> Fraction | None:
    groups = match.groups()
    if kind == "plain":
        return Fraction(match.group(0))
    if kind == "e_notation":
        return _scaled(groups[0], groups[1])
    if kind == "times_ten":
        return _scaled(groups[0], groups[1] or groups[2])
    if kind == "repeating":
        whole, fixed, repeat = groups[0] or "0", groups[1], groups[2] or groups[3] or groups[4]
        fixed_value = Fraction(int(fixed or "0"), 10 ** len(fixed))
        return int(whole) + fixed_value + Fraction(int(repeat), 10 ** len(fixed) * (10 ** len(repeat) - 1))
    if kind == "frac":
        numerator, denominator = Fraction(groups[0] or groups[1]), Fraction(groups[2] or groups[3])
    elif kind == "slash":
        numerator, denominator = Fraction(groups[0]), Fraction(groups[1])
    else:  # an integer next to a proper fraction is a mixed number (2\frac{1}{2} = 5/2), else a product
        whole, numerator, denominator = Fraction(groups[0]), Fraction(groups[1] or groups[2]), \
            Fraction(groups[3] or groups[4])
        if not denominator:
            return None
        return whole + numerator / denominator if numerator < denominator else whole * numerator / denominator
    return numerator / denominator if denominator else None


def parse_number(text: str) -> Number | None:
    """The exact value of `text` if it is a plain number in one of the notations above, else None."""
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    if not text or len(text) > MAX_LITERAL_DIGITS or not (text[0].isdigit() or text[0] in ".\\"):
        return None
    for kind, pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            value = _read(kind, match)
            if value is None:
                return None
            return Number(-value if negative else value, percent)
    return None


def numbers_match(pred: Number, gold: Number, rel_tol: Fraction) -> bool:
    """Exact when the gold value is an integer, else relative tolerance; `%` makes value/100 an alternative."""
    gold_values = (gold.value, gold.value / 100) if gold.percent else (gold.value,)
    pred_values = (pred.value, pred.value / 100) if pred.percent else (pred.value,)
    for gold_value in gold_values:
        for pred_value in pred_values:
            if gold_value.denominator == 1:
                if pred_value == gold_value:
                    return True
            elif abs(pred_value - gold_value) <= rel_tol * abs(gold_value):
                return True
    return False
