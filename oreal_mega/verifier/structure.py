"""Split a normalised answer into its shape: scalar, equation, relation, ratio/time, tuple/interval, set, list,
union, matrix, choice."""
import re
from dataclasses import dataclass

from oreal_mega.verifier.caching import short_args_cache

MAX_ITEMS = 100  # longer sequences are compared as strings only
MAX_DEPTH = 6  # nesting of structures (tuples of sets of ...) read before giving up on structure
MAX_LABEL_CHARS = 40
_OPENERS = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "\\langle": "\\rangle"}
_CLOSERS = {")", "]", "}", "\\}", "\\rangle", "\\rfloor", "\\rceil"}
_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|.", re.DOTALL)
_MATRIX = re.compile(r"\\begin\{([pbBv]?matrix|array)\}(?:\{[^{}]*\})?((?:(?!\\begin\{|\\end\{).)*)\\end\{\1\}",
                     re.DOTALL)
_MAYBE_STRUCTURED = re.compile(
    r"[,;=<>:]|\\(?:cup|in|pm|mp|begin|leq|geq|neq|approx)(?![a-zA-Z])|^(?:\(|\[|\{|\\\{|\\langle)")
_CHOICE = re.compile(r"\(?([A-E])\)?")
_NAME = re.compile(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?|\\[a-zA-Z]+(?:_\{?[a-zA-Z0-9]+\}?)?")
RELATIONS = ("<", ">", "\\leq", "\\geq", "\\neq")
_LESS = {"<": "(", "\\leq": "["}  # a < x <= b -> (a, b]
_GREATER = {">": "<", "\\geq": "\\leq"}
_SUBSCRIPT = re.compile(r"_(?:\{[^{}]*\}|[a-zA-Z0-9])")
_CALL = re.compile(r"(?<=[a-zA-Z])\([^()=]*\)")  # f(2), P(A): the argument is part of the label
_LABEL_COMMANDS = {"alpha", "beta", "gamma", "delta", "theta", "phi", "lambda", "mu", "omega", "angle",
                   "measuredangle", "triangle", "overline", "overrightarrow", "vec", "hat", "bar", "widehat", "frac",
                   "sigma", "rho", "tau", "psi", "varphi", "epsilon", "Delta", "Omega"}
_LABEL_CHARS = re.compile(r"(?:[a-zA-Z(),|:{}' ]|\\[a-zA-Z]+)+")
_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?((?:[ap]\.?m\.?)?)", re.IGNORECASE)


@dataclass(frozen=True)
class Scalar:
    text: str


@dataclass(frozen=True)
class Choice:
    letter: str


@dataclass(frozen=True)
class Equation:
    lhs: str
    rhs: object  # a parsed answer
    rhs_text: str


@dataclass(frozen=True)
class Relation:
    lhs: str
    relation: str  # one of RELATIONS
    rhs: str


@dataclass(frozen=True)
class Ratio:
    parts: tuple  # of scalar texts: `3:4:5`
    clock: tuple | None = None  # (hours, minutes, seconds, "am"/"pm"/"") when it reads as a time of day


@dataclass(frozen=True)
class Sequence:
    kind: str  # "set" (\{..\}), "list" (bare commas, ±, "and"), "bracketed" (tuple or interval)
    items: tuple
    left: str = ""
    right: str = ""


@dataclass(frozen=True)
class Union:
    parts: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple  # of tuples of parsed answers

    @property
    def is_vector(self) -> bool:
        return len(self.rows) == 1 or all(len(row) == 1 for row in self.rows)

    @property
    def entries(self) -> tuple:
        return tuple(entry for row in self.rows for entry in row)


def is_name(text: str) -> bool:
    """A variable or function name that can stand on the left of an assignment: x, a_1, f(x), \\theta."""
    return _NAME.fullmatch(text) is not None


def is_label(text: str) -> bool:
    """A name, or names only: what labels a value without computing with it.

    `x`, `(p,q)`, `AB`, `|AB|`, `f(2)`, `\\angle ABC`, `\\frac{NO}{BO}`, `S_{ABC}:S` -- but never a sum, a product
    with a number, or anything with an operator (`x+y`, `2x`).
    """
    if is_name(text):
        return True
    if len(text) > MAX_LABEL_CHARS:
        return False
    bare = _CALL.sub("", _SUBSCRIPT.sub("", text))
    if not _LABEL_CHARS.fullmatch(bare) or not any(char.isalpha() for char in bare):
        return False
    commands = re.findall(r"\\[a-zA-Z]+", bare)
    # juxtaposed capitals name a segment or an angle (`AB`, `\angle ABC`); juxtaposed small letters (`xy`) multiply
    juxtaposed = re.findall(r"[a-zA-Z]{2,}", re.sub(r"\\[a-zA-Z]+", " ", bare))
    return all(command[1:] in _LABEL_COMMANDS for command in commands) and all(run.isupper() for run in juxtaposed)


def _split_top_level(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split at separators outside any bracket pair; brackets of any kind count as one nesting level."""
    return _split_keeping_separators(text, separators)[0]


def _split_keeping_separators(text: str, separators: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if not any(separator in text for separator in separators):
        return [text], []
    parts, found, current, depth = [], [], [], 0
    for token in _TOKEN.findall(text):
        if token in _OPENERS:
            depth += 1
        elif token in _CLOSERS:
            depth -= 1
        if depth == 0 and token in separators:
            parts.append("".join(current))
            found.append(token)
            current = []
        else:
            current.append(token)
    parts.append("".join(current))
    return parts, found


def _outer_brackets(text: str) -> tuple[str, str, str] | None:
    """(left, inner, right) when one bracket pair (of any kinds, like `[1,2)`) encloses the whole text."""
    tokens = _TOKEN.findall(text)
    if not tokens or tokens[0] not in _OPENERS or tokens[-1] not in _CLOSERS:
        return None
    depth = 0
    for index, token in enumerate(tokens):
        if token in _OPENERS:
            depth += 1
        elif token in _CLOSERS:
            depth -= 1
            if depth == 0 and index != len(tokens) - 1:
                return None
    return tokens[0], "".join(tokens[1:-1]), tokens[-1]


def _sequence(kind: str, parts: list[str], depth: int, left: str = "", right: str = ""):
    if len(parts) > MAX_ITEMS:
        return None
    return Sequence(kind, tuple(parse_structure(part, depth + 1) for part in parts), left, right)


def _matrix(body: str, depth: int) -> Matrix:
    rows = [row for row in re.split(r"\\\\", body) if row.strip()]
    return Matrix(tuple(tuple(parse_structure(cell.strip(), depth + 1) for cell in row.split("&")) for row in rows))


def _plus_minus(text: str, depth: int):
    """`1\\pm\\sqrt{2}` is the list of both signs; only the first top-level ± is expanded."""
    for sign in ("\\pm", "\\mp"):
        head, *tail = _split_top_level(text, (sign,))
        if tail:
            rest = sign.join(tail)
            return _sequence("list", [f"{head}+{rest}", f"{head}-{rest}"], depth)
    return None


def interval_of(relation: Relation) -> Equation | None:
    """`x > 3` -> `x \\in (3, \\infty)`: a one-sided condition on a name, when the other side has no name in it."""
    lhs, operator, rhs = relation.lhs, relation.relation, relation.rhs
    if not is_name(lhs) and is_name(rhs):
        lhs, rhs, operator = rhs, lhs, {"<": ">", ">": "<", "\\leq": "\\geq", "\\geq": "\\leq"}.get(operator)
    if operator is None or operator == "\\neq" or not is_name(lhs) or re.search(r"[a-zA-Z]", _constants_removed(rhs)):
        return None
    if operator in _LESS:
        interval = Sequence("bracketed", (Scalar("-\\infty"), Scalar(rhs)), "(", ")" if operator == "<" else "]")
    else:
        interval = Sequence("bracketed", (Scalar(rhs), Scalar("\\infty")), "(" if operator == ">" else "[", ")")
    return Equation(lhs, interval, "")


def _constants_removed(text: str) -> str:
    return re.sub(r"\\(?:pi|infty|sqrt|frac|cdot|times|ln|log|sin|cos|tan)(?![a-zA-Z])|(?<![a-zA-Z\\])e(?![a-zA-Z])",
                  "", text)


def _relation(text: str, depth: int):
    """`x \\leq 3` -> Relation; `a < x \\leq b` (a name between two bounds) -> `x \\in (a, b]`; None if no relation."""
    parts, operators = _split_keeping_separators(text, RELATIONS)
    parts = [part.strip() for part in parts]
    if not operators or not all(parts):
        return None
    if len(operators) == 1:
        return Relation(parts[0], operators[0], parts[1])
    if len(operators) == 2 and is_name(parts[1]):
        low, name, high = parts
        first, second = operators
        if first in _GREATER and second in _GREATER:  # b > x >= a
            low, high, first, second = high, low, _GREATER[second], _GREATER[first]
        if first in _LESS and second in _LESS:
            right = ")" if second == "<" else "]"
            return Equation(name, _sequence("bracketed", [low, high], depth, _LESS[first], right), f"{low},{high}")
    return Scalar(text)


def _set_builder(inner: str, depth: int):
    """`\\{x \\mid -2 \\leq x \\leq 7\\}` -> `x \\in [-2, 7]`; None when the braces hold no such condition."""
    for separator in ("\\mid", "|", ":"):
        head, *rest = _split_top_level(inner, (separator,))
        name = _split_top_level(head, ("\\in",))[0]
        if not rest or not is_name(name):
            continue
        condition = parse_structure(separator.join(rest).strip(), depth + 1)
        if isinstance(condition, Relation):
            condition = interval_of(condition)
        if isinstance(condition, Equation) and condition.lhs == name:
            return condition
    return None


def _ratio(text: str):
    clock = _CLOCK.fullmatch(text)
    if clock:
        hours, minutes, seconds, meridiem = clock.groups()
        return Ratio((hours, minutes) + ((seconds,) if seconds else ()),
                     (int(hours), int(minutes), int(seconds or 0), meridiem.replace(".", "").lower()))
    parts = _split_top_level(text, (":",))
    if len(parts) > 1 and all(parts):
        return Ratio(tuple(parts))
    return None


@short_args_cache()
def parse_structure(text: str, depth: int = 0):
    """The shape of a normalised answer, as nested Scalar/Choice/Equation/Relation/Ratio/Sequence/Union/Matrix."""
    if depth > MAX_DEPTH or not text:
        return Scalar(text)
    choice = _CHOICE.fullmatch(text)
    if choice and (text[0] == "(") == (text[-1] == ")"):
        return Choice(choice.group(1))
    if not _MAYBE_STRUCTURED.search(text):
        return Scalar(text)
    solutions = _split_top_level(text, (";",))  # `p=5,q=2; p=7,q=2`: `;` separates whole solutions
    parts = solutions if len(solutions) > 1 else _split_top_level(text, (",",))
    if len(parts) > 1:
        return _sequence("list", [part for part in parts if part], depth) or Scalar(text)
    union = _split_top_level(text, ("\\cup",))
    if len(union) > 1:
        return Union(tuple(parse_structure(part, depth + 1) for part in union))
    approximation = _split_top_level(text, ("\\approx",))
    if len(approximation) > 1:  # `x = 1/3 \approx 0.33` is x = 1/3; `x \approx 11` is x = 11
        exact = approximation[0]
        if not exact or len(_split_top_level(exact, ("=",))) > 1:
            return parse_structure(exact or approximation[-1], depth + 1)
        return Equation(exact, parse_structure(approximation[-1], depth + 1), approximation[-1])
    for relation in ("=", "\\in"):
        sides = _split_top_level(text, (relation,))
        if len(sides) > 1 and sides[0]:
            rhs = sides[-1]
            return Equation(sides[0], parse_structure(rhs, depth + 1), rhs)
    relation = _relation(text, depth)
    if relation is not None:
        return relation
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        return _matrix(matrix.group(2), depth)
    brackets = _outer_brackets(text)
    if brackets:
        left, inner, right = brackets
        if left == "\\{":
            builder = _set_builder(inner, depth)
            if builder is not None:
                return builder
            return _sequence("set", _split_top_level(inner, (",", ";")), depth) or Scalar(text)
        if left == "{" and right == "}":  # TeX grouping braces are invisible: `{1,3}` is the list 1, 3
            return parse_structure(inner, depth + 1)
        items = _split_top_level(inner, (",",))
        items = items if len(items) > 1 else _split_top_level(inner, (";",))  # (0;-2;6)
        if len(items) > 1:
            left, right = ("(", ")") if left == "\\langle" else (left, right)
            return _sequence("bracketed", items, depth, left, right) or Scalar(text)
        if (left, right) == ("(", ")") or _MATRIX.fullmatch(inner):
            return parse_structure(inner, depth + 1)
    ratio = _ratio(text)
    if ratio is not None:
        return ratio
    return _plus_minus(text, depth) or Scalar(text)
