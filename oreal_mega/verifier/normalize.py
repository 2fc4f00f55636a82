"""Rewrite an extracted answer into a canonical LaTeX string: notation that never changes the value goes away.

Units are taken off the canonical string but remembered (`answer_unit`), so that answers in two different units
never compare equal while `5\\text{ cm}` still equals a bare `5`.
"""
import re

from oreal_mega.verifier.caching import short_args_cache
from oreal_mega.verifier.extract import undouble_backslashes

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_UNICODE = {"−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ", "∞": "\\infty ",
            "≤": "\\leq ", "≥": "\\geq ", "≠": "\\neq ", "°": "^\\circ", "√": "\\sqrt", "∅": "\\emptyset "}
# before anything splits at `=`: `<=` is one relation, not an equation
_ASCII_RELATIONS = re.compile(r"<=|=<|>=|!=|\\lt(?![a-zA-Z])|\\gt(?![a-zA-Z])")
_ASCII_RELATION_LATEX = {"<=": "\\leq ", "=<": "\\leq ", ">=": "\\geq ", "!=": "\\neq ", "\\lt": "<", "\\gt": ">"}
_RENAMES = [
    (re.compile(r"\\[dtc]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-zA-Z])"), r"\\binom"),
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:left|right)\s*\.|\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:le|leqslant|leqq)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant|geqq)(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\(?:ne)(?![a-zA-Z])"), r"\\neq"),
    (re.compile(r"\\lbrace(?![a-zA-Z])"), r"\\{"),
    (re.compile(r"\\rbrace(?![a-zA-Z])"), r"\\}"),
    (re.compile(r"\\(?:infinity|inf)(?![a-zA-Z])|(?<![a-zA-Z\\])infinity(?![a-zA-Z])"), r"\\infty"),
    (re.compile(r"\\cup(?![a-zA-Z])|(?<=[\])])\s*U\s*(?=[\[(])"), r"\\cup "),
    (re.compile(r"\\(?:vert|lvert|rvert)(?![a-zA-Z])"), "|"),
    (re.compile(r"\\varnothing(?![a-zA-Z])|\\\{\s*\\\}"), r"\\emptyset"),  # one spelling of the empty set
]
_PERCENT_WORD = re.compile(r"(?<=[\d}])\s*(?:\\(?:text|mbox|textnormal|mathrm)\s*\{\s*)?"
                           r"(?:percent(?:age)?|per\s+cent|pct)\.?(?:\s*\})?(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|\^\s*\{\s*\}")
_THOUSANDS_GROUP = re.compile(r"(\d)(?:\{,\}|\\,|\\ |~|\\;)(?=\d{3}(?!\d))")
_NEGATIVE_SPACE = re.compile(r"\\!\s*")  # `32,\! 349` is one number: the thin space and the space after it go
_SPACES = re.compile(r"(?<!\\)\\[,;:> ]|~|\\q?quad(?![a-zA-Z])")
_CONNECTIVES = re.compile(
    r"(?:\\(?:text|mbox|textnormal|mathrm)\{\s*(?:and|or)\s*\})|(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z])")
_FONT_COMMANDS = re.compile(
    r"\\(?:mathrm|mathbf|mathit|mathsf|mathbb|boldsymbol|bm|textbf|textit|operatorname)\s*\{([^{}]*)\}")
_TEXT_GROUP = re.compile(r"\\(?:text|mbox|textnormal)\s*\{([^{}]*)\}(\s*\^\s*\{?\d\}?)?")
_QUALIFIER = re.compile(r"\b(?:not|no|never|least|most|more|less|fewer|than|over|under|about|except)\b", re.IGNORECASE)
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MERIDIEM_TEXT = re.compile(r"\\(?:text|mbox|textnormal|mathrm)\s*\{\s*([AaPp]\.?\s*[Mm]\.?)\s*\}")  # kept: am vs pm
# canonical unit -> its spellings; answers in two different known units are different answers
_UNITS = {
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "m": ("m", "meter", "meters", "metre", "metres"),
    "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres"),
    "inch": ("in", "inch", "inches"), "foot": ("ft", "foot", "feet"), "yard": ("yd", "yard", "yards"),
    "mile": ("mi", "mile", "miles"),
    "second": ("s", "sec", "secs", "second", "seconds"), "minute": ("min", "mins", "minute", "minutes"),
    "hour": ("h", "hr", "hrs", "hour", "hours"), "day": ("day", "days"), "week": ("week", "weeks"),
    "year": ("yr", "yrs", "year", "years"),
    "dollar": ("dollar", "dollars"), "cent": ("cent", "cents"), "degree": ("deg", "degree", "degrees"),
    "gram": ("g", "gram", "grams"), "kg": ("kg", "kilogram", "kilograms"), "pound": ("lb", "lbs", "pound", "pounds"),
    "liter": ("l", "liter", "liters", "litre", "litres"), "ml": ("ml", "milliliter", "milliliters"),
    "mph": ("mph",),
}
_UNIT_BY_SPELLING = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}
_POWER_WORDS = {"square": 2, "sq": 2, "cubic": 3}
_COUNT_NOUNS = ("units", "unit", "people", "ways", "students", "points")  # dropped, never compared
_TRAILING_UNITS = re.compile(r"(?<=[\d}).])\s+((?:(?:%s)(?![a-zA-Z])\s*(?:\^\s*\{?\d\}?)?\s*)+)$" % "|".join(
    sorted([*_UNIT_BY_SPELLING, *_POWER_WORDS, *_COUNT_NOUNS], key=len, reverse=True)))
_UNIT_TOKEN = re.compile(r"[a-zA-Z]+|\^\s*\{?(\d)\}?")
_SPACE_THOUSANDS = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_COMMA_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?")  # no space after the comma: `32, 349` is a list
_WHITESPACE = re.compile(r"\s+")
_COMMAND_BEFORE_LETTER = re.compile(r"(\\[a-zA-Z]+) (?=[a-zA-Z])")
_ALREADY_CANONICAL = re.compile(r"-?\d+(?:\.\d+)?|[a-zA-Z]")


def _group_end(text: str, open_at: int) -> int:
    """Index just past the brace group that opens at text[open_at], or -1 when it never closes."""
    depth = 0
    i = open_at
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
        i += 1
    return -1


def _unwrap_whole_text(answer: str) -> str:
    """`\\text{(B)}` -> `(B)`: a text command spanning the whole answer is only a wrapper."""
    while True:
        match = re.match(r"\\(?:text|mbox|textnormal|textbf|mathrm|mathbf)\s*\{", answer)
        if not match or _group_end(answer, match.end() - 1) != len(answer):
            return answer
        answer = answer[match.end():-1].strip()


def _unwrap_boxes(answer: str) -> str:
    """`\\boxed{28} pct` -> `28 pct`: a box inside an answer only marks it."""
    while (match := _BOX_COMMAND.search(answer)) is not None:
        end = _group_end(answer, match.end() - 1)
        if end < 0:
            return answer
        answer = answer[:match.start()] + answer[match.end():end - 1] + answer[end:]
    return answer


def _strip_wrappers(answer: str) -> str:
    changed = True
    while changed:
        changed = False
        answer = answer.strip()
        for left, right in _WRAPPERS:
            if len(answer) >= len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
                answer = answer[len(left):len(answer) - len(right)]
                changed = True
    return answer


def _collapse_whitespace(answer: str) -> str:
    """Drop all spaces except the one that ends a command name before a letter (`\\sin x`)."""
    answer = _WHITESPACE.sub(" ", answer).strip()
    answer = _COMMAND_BEFORE_LETTER.sub(r"\1\0", answer)
    return answer.replace(" ", "").replace("\0", " ")


def canonical_unit(text: str) -> str | None:
    """`cm^2` for ` square centimeters` or `\\text{ cm}^2`; None when the text is not one known unit."""
    names, power = [], 1
    for token in _UNIT_TOKEN.finditer(text.lower()):
        word = token.group(0)
        if token.group(1):
            power = int(token.group(1))
        elif word in _POWER_WORDS:
            power = _POWER_WORDS[word]
        elif word in _UNIT_BY_SPELLING:
            names.append(_UNIT_BY_SPELLING[word])
        else:
            return None
    if len(names) != 1:
        return None
    return names[0] if power == 1 else f"{names[0]}^{power}"


def _text_as_unit(units: list):
    """A `\\text{...}` group is taken off as a unit (into `units`), except one that qualifies the value
    (`\\text{not } 72`, `\\text{at least } 5`): that one stays, so the answer never equals the bare value."""
    def take(match: re.Match) -> str:
        if _QUALIFIER.search(match.group(1)):
            return match.group(0)
        units.append(match.group(1) + (match.group(2) or ""))
        return ""
    return take


@short_args_cache()
def normalize_with_unit(answer: str) -> tuple[str, str | None]:
    """(canonical form of an answer, its canonical unit or None). Pure string work, no parsing."""
    if _ALREADY_CANONICAL.fullmatch(answer):
        return answer, None
    units = []
    answer = _strip_wrappers(undouble_backslashes(answer))
    for char, replacement in _UNICODE.items():
        if char in answer:
            answer = answer.replace(char, replacement)
    answer = _ASCII_RELATIONS.sub(lambda match: _ASCII_RELATION_LATEX[match.group(0)], answer)
    answer = _unwrap_whole_text(_unwrap_boxes(answer)).replace("\\$", "").replace("$", "")
    answer = _PERCENT_WORD.sub("\\%", answer)
    if "\\" in answer:
        answer = _MERIDIEM_TEXT.sub(lambda match: match.group(1).replace(" ", ""), answer)
        for pattern, replacement in _RENAMES:
            answer = pattern.sub(replacement, answer)
        answer = _FONT_COMMANDS.sub(r"\1", answer)
        answer = _THOUSANDS_GROUP.sub(r"\1", answer)
    answer = _NEGATIVE_SPACE.sub("", answer.replace("{,}", ""))
    answer = answer.replace("\\%", "%")
    if _DEGREES.search(answer):
        answer = _DEGREES.sub("", answer)
        units.append("degree")
    answer = _CONNECTIVES.sub(",", answer)
    answer = _SPACES.sub(" ", answer)
    if "\\" in answer:
        answer = _unwrap_whole_text(answer.strip())
        without_text = _TEXT_GROUP.sub(_text_as_unit(units), answer)  # `5\text{ cm}^2`; keep a text-only answer
        answer = without_text if without_text.strip() else answer
    answer = answer.strip().rstrip(".").strip()
    if _SPACE_THOUSANDS.fullmatch(answer) or _COMMA_THOUSANDS.fullmatch(answer):
        answer = answer.replace(" ", "").replace(",", "")
    trailing = _TRAILING_UNITS.search(answer)
    if trailing and trailing.start() > 0:
        units.append(trailing.group(1))
        answer = answer[:trailing.start()]
    answer = _collapse_whitespace(answer)
    if answer.startswith("+"):
        answer = answer[1:]
    known_units = {unit for unit in map(canonical_unit, units) if unit}
    return answer.strip(","), known_units.pop() if len(known_units) == 1 else None


def normalize_answer(answer: str) -> str:
    """Canonical form of an answer: same value, one spelling."""
    return normalize_with_unit(answer)[0]
