"""Rewrite an extracted answer into a canonical LaTeX string: notation that never changes the value goes away."""
import re

from oreal_mega.verifier.caching import short_args_cache

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_UNICODE = {"−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ", "∞": "\\infty ",
            "≤": "\\leq ", "≥": "\\geq ", "°": "^\\circ", "√": "\\sqrt"}
_RENAMES = [
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-zA-Z])"), r"\\binom"),
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:left|right)\s*\.|\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:le|leqslant)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\(?:ne)(?![a-zA-Z])"), r"\\neq"),
    (re.compile(r"\\lbrace(?![a-zA-Z])"), r"\\{"),
    (re.compile(r"\\rbrace(?![a-zA-Z])"), r"\\}"),
    (re.compile(r"\\(?:infinity|inf)(?![a-zA-Z])|(?<![a-zA-Z\\])infinity(?![a-zA-Z])"), r"\\infty"),
    (re.compile(r"\\cup(?![a-zA-Z])|(?<=[\])])\s*U\s*(?=[\[(])"), r"\\cup "),
]
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|\^\s*\{\s*\}")
_THOUSANDS_GROUP = re.compile(r"(\d)(?:\{,\}|\\,|\\ |~|\\;)(?=\d{3}(?!\d))")
_SPACES = re.compile(r"(?<!\\)\\[,;:> ]|~|\\q?quad(?![a-zA-Z])")
_CONNECTIVES = re.compile(
    r"(?:\\(?:text|mbox|textnormal|mathrm)\{\s*(?:and|or)\s*\})|(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z])")
_FONT_COMMANDS = re.compile(
    r"\\(?:mathrm|mathbf|mathit|mathsf|mathbb|boldsymbol|bm|textbf|textit|operatorname)\s*\{([^{}]*)\}")
_TEXT_GROUP = re.compile(r"\\(?:text|mbox|textnormal)\s*\{([^{}]*)\}(\s*\^\s*\{?\d\}?)?")
_UNIT_WORDS = ("units", "unit", "cm", "mm", "km", "m", "meters", "meter", "metres", "inches", "inch", "in", "feet",
               "foot", "ft", "yards", "yd", "miles", "mi", "seconds", "second", "sec", "s", "minutes", "minute",
               "min", "hours", "hour", "hrs", "hr", "days", "day", "weeks", "years", "dollars", "dollar", "cents",
               "cent", "degrees", "degree", "grams", "gram", "g", "kg", "pounds", "lbs", "liters", "ml", "mph",
               "square", "sq", "cubic", "people", "ways", "students", "points")
_TRAILING_UNITS = re.compile(
    r"(?<=[\d}).])\s+(?:(?:%s)(?![a-zA-Z])\s*(?:\^\s*\{?\d\}?)?\s*)+$" % "|".join(_UNIT_WORDS))
_SPACE_THOUSANDS = re.compile(r"^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")
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


@short_args_cache()
def normalize_answer(answer: str) -> str:
    """Canonical form of an answer: same value, one spelling. Pure string work, no parsing."""
    if _ALREADY_CANONICAL.fullmatch(answer):
        return answer
    answer = _strip_wrappers(answer)
    for char, replacement in _UNICODE.items():
        if char in answer:
            answer = answer.replace(char, replacement)
    answer = _unwrap_whole_text(answer)
    if "\\" in answer:
        for pattern, replacement in _RENAMES:
            answer = pattern.sub(replacement, answer)
        answer = _FONT_COMMANDS.sub(r"\1", answer)
        answer = _THOUSANDS_GROUP.sub(r"\1", answer)
    answer = answer.replace("{,}", "").replace("\\!", "").replace("\\%", "%").replace("\\$", "")
    answer = answer.replace("$", "")
    answer = _DEGREES.sub("", answer)
    answer = _CONNECTIVES.sub(",", answer)
    answer = _SPACES.sub(" ", answer)
    if "\\" in answer:
        answer = _unwrap_whole_text(answer.strip())
        without_text = _TEXT_GROUP.sub("", answer)  # units such as `5\text{ cm}^2`; keep a text-only answer
        answer = without_text if without_text.strip() else answer
    answer = answer.strip().rstrip(".").strip()
    if _SPACE_THOUSANDS.match(answer):
        answer = answer.replace(" ", "")
    answer = _TRAILING_UNITS.sub("", answer) or answer
    answer = _collapse_whitespace(answer)
    if answer.startswith("+"):
        answer = answer[1:]
    return answer.strip(",")
