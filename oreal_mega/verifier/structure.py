"""Split a normalised answer into its shape: scalar, equation, tuple/interval, set, list, union, matrix, choice."""
import re
from dataclasses import dataclass

from oreal_mega.verifier.caching import short_args_cache

MAX_ITEMS = 100  # longer sequences are compared as strings only
MAX_DEPTH = 6  # nesting of structures (tuples of sets of ...) read before giving up on structure
_OPENERS = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "\\langle": "\\rangle"}
_CLOSERS = {")", "]", "}", "\\}", "\\rangle", "\\rfloor", "\\rceil"}
_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|.", re.DOTALL)
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?")
_MATRIX = re.compile(r"\\begin\{([pbBv]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}", re.DOTALL)
_MAYBE_STRUCTURED = re.compile(r"[,;=]|\\(?:cup|in|pm|mp|begin)(?![a-zA-Z])|^(?:\(|\[|\{|\\\{|\\langle)")
_CHOICE = re.compile(r"\(?([A-E])\)?")
_NAME = re.compile(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?|\\[a-zA-Z]+(?:_\{?[a-zA-Z0-9]+\}?)?")


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


def _split_top_level(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split at separators outside any bracket pair; brackets of any kind count as one nesting level."""
    parts, current, depth = [], [], 0
    for token in _TOKEN.findall(text):
        if token in _OPENERS:
            depth += 1
        elif token in _CLOSERS:
            depth -= 1
        if depth == 0 and token in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(token)
    parts.append("".join(current))
    return parts


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


@short_args_cache()
def parse_structure(text: str, depth: int = 0):
    """The shape of a normalised answer, as nested Scalar/Choice/Equation/Sequence/Union/Matrix."""
    if depth > MAX_DEPTH or not text:
        return Scalar(text)
    choice = _CHOICE.fullmatch(text)
    if choice and (text[0] == "(") == (text[-1] == ")"):
        return Choice(choice.group(1))
    if not _MAYBE_STRUCTURED.search(text):
        return Scalar(text)
    if _THOUSANDS.fullmatch(text):
        return Scalar(text.replace(",", ""))
    parts = _split_top_level(text, (",", ";"))
    if len(parts) > 1:
        return _sequence("list", [part for part in parts if part], depth) or Scalar(text)
    union = _split_top_level(text, ("\\cup",))
    if len(union) > 1:
        return Union(tuple(parse_structure(part, depth + 1) for part in union))
    for relation in ("=", "\\in"):
        sides = _split_top_level(text, (relation,))
        if len(sides) > 1 and sides[0]:
            rhs = sides[-1]
            return Equation(sides[0], parse_structure(rhs, depth + 1), rhs)
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        return _matrix(matrix.group(2), depth)
    brackets = _outer_brackets(text)
    if brackets:
        left, inner, right = brackets
        if left == "\\{":
            return _sequence("set", _split_top_level(inner, (",", ";")), depth) or Scalar(text)
        items = _split_top_level(inner, (",",))
        if len(items) > 1:
            left, right = ("(", ")") if left == "\\langle" else (left, right)
            return _sequence("bracketed", items, depth, left, right) or Scalar(text)
        if (left, right) == ("(", ")") or (left, right) == ("{", "}"):
            return parse_structure(inner, depth + 1)
    return _plus_minus(text, depth) or Scalar(text)
