"""A small recursive-descent parser from (normalised) LaTeX scalar expressions to sympy.

It covers what final answers are written in -- numbers, letters, + - * / ^, \\frac, \\sqrt, \\pi, \\binom,
functions, |.|, !, matrix environments and their sums, products and powers -- in tens of microseconds. It refuses
(TooLarge) to build numbers that would take unbounded time or memory to evaluate, such as 9^{9^{9^{9}}}, and
(Undefined) values that do not exist, such as 0^0. Anything else raises LatexParseError so that the caller can try
a fuller parser.
"""
import math
import re

import sympy
from sympy.matrices.exceptions import NonSquareMatrixError, ShapeError

MAX_DIGITS = 4_000  # largest exact number (decimal digits) we let sympy build; below Python's int-parsing cap
MAX_NESTING = 60  # deeper brace/parenthesis nesting is refused rather than risking the Python stack


class LatexParseError(ValueError):
    """The text is not in the LaTeX subset this parser reads."""


class TooLarge(ValueError):
    """The expression would evaluate to an unreasonably large exact number (or nest too deep)."""


class Undefined(ValueError):
    """The expression has no value (0^0, 0 to a negative power): it equals nothing, not even another one."""


_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\.)|(?P<char>\S))")
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "tanh": sympy.tanh, "ln": sympy.log, "log": sympy.log, "exp": sympy.exp,
}
_INVERSES = {"sin": sympy.asin, "cos": sympy.acos, "tan": sympy.atan}
_MULTIPLY = {"*", "\\cdot", "\\times"}
_DIVIDE = {"/", "\\div"}
_MATRIX_ENVIRONMENTS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "array"}
_ENDS_OF_FACTOR = {"\\rfloor", "\\rceil", "\\\\", "\\end"}  # tokens that close a factor rather than start one


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise LatexParseError(f"cannot read {text[position:position + 10]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _integer_digits(value: sympy.Rational) -> int:
    return max(len(str(abs(value.p))), len(str(value.q)))


def _checked_power(base, exponent):
    """base**exponent, refusing exact numbers of more than MAX_DIGITS digits and the undefined 0^0, 0^-n."""
    if isinstance(base, sympy.MatrixBase):
        if not (exponent.is_Integer and 0 < exponent <= MAX_DIGITS):
            raise LatexParseError("only positive integer powers of a matrix are read")
        return base ** exponent
    if base == 0 and exponent.is_nonpositive:
        raise Undefined(f"0^{exponent} is undefined")
    if base.is_Rational and exponent.is_Rational and base not in (0, 1, -1):
        magnitude = abs(exponent)
        if magnitude > MAX_DIGITS or magnitude * math.log10(_integer_digits(base) * 10) > MAX_DIGITS:
            raise TooLarge("power too large to evaluate exactly")
    return sympy.Pow(base, exponent)


def _checked_factorial(value):
    if value.is_Integer and value > 3000:
        raise TooLarge("factorial too large to evaluate exactly")
    return sympy.factorial(value)


def _checked_binomial(n, k):
    if n.is_Integer and n > 3.3 * MAX_DIGITS:  # binom(n, k) <= 2^n has at most 0.302 n digits
        raise TooLarge("binomial too large to evaluate exactly")
    return sympy.binomial(n, k)


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.position = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def peek_value(self) -> str | None:
        token = self.peek()
        return token[1] if token else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise LatexParseError("unexpected end of expression")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise LatexParseError(f"expected {value!r}, found {token[1]!r}")

    def nested(self, parse):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise TooLarge("expression nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def parse(self):
        value = self.expression()
        if self.peek() is not None:
            raise LatexParseError(f"unexpected {self.peek_value()!r}")
        return value

    def expression(self):
        value = self.signed()
        while self.peek_value() in ("+", "-"):
            operator = self.take()[1]
            right = self.signed()
            value = value + right if operator == "+" else value - right
        return value

    def signed(self):
        if self.peek_value() == "-":
            self.take()
            return -self.signed()
        if self.peek_value() == "+":
            self.take()
            return self.signed()
        return self.product()

    def product(self):
        start = self.position
        starts_with_integer = self.peek() is not None and self.peek()[0] == "num" and self.peek_value().isdigit()
        value = self.power()
        if starts_with_integer and self.position == start + 1 and self.peek_value() == "\\frac":
            value = self.mixed_number(value)
        while True:
            token = self.peek_value()
            if token in _MULTIPLY:
                self.take()
                value = value * self.signed_power()
            elif token in _DIVIDE:
                self.take()
                value = value / self.signed_power()
            elif self.starts_factor():
                value = value * self.power()
            else:
                return value

    def mixed_number(self, whole):
        """`3\\frac{1}{2}` is 7/2: an integer immediately followed by a proper fraction of integers (nothing raised
        to a power after it) is a mixed number; otherwise the two are a product, read by the caller."""
        start = self.position
        fraction = self.primary()
        if (isinstance(fraction, sympy.Rational) and 0 < fraction < 1 and self.peek_value() not in ("^", "!")
                and not self.starts_factor()):
            return whole + fraction
        self.position = start
        return whole
    def signed_power(self):
        if self.peek_value() == "-":
            self.take()
            return -self.signed_power()
        return self.power()

    def starts_factor(self) -> bool:
        token = self.peek()
        if token is None:
            return False
        kind, value = token
        if kind in ("num", "cmd"):
            return value not in _MULTIPLY and value not in _DIVIDE and value not in _ENDS_OF_FACTOR
        return value.isalpha() or value in ("(", "{")

    def power(self):
        base = self.postfix(self.primary())
        if self.peek_value() == "^":
            self.take()
            base = _checked_power(base, self.exponent())
        return base

    def exponent(self):
        if self.peek_value() == "-":
            self.take()
            return -self.exponent()
        return self.argument()

    def postfix(self, value):
        while self.peek_value() in ("!", "%"):
            if self.take()[1] == "!":
                value = _checked_factorial(value)
            else:
                value = value / 100
        return value

    def argument(self):
        """A macro argument: a brace group, or a single digit / letter / command (`\\frac12`, `x^2`)."""
        kind, value = self.take()
        if value == "{":
            inner = self.nested(self.expression)
            self.expect("}")
            return inner
        if kind == "num":
            if not value[0].isdigit():
                raise LatexParseError(f"unexpected {value!r} as a macro argument")
            if len(value) > 1:  # \frac12 means \frac{1}{2}: give back the remaining digits
                self.tokens[self.position - 1:self.position] = [("num", value[0]), ("num", value[1:])]
            return sympy.Integer(value[0])
        self.position -= 1
        return self.primary()

    def group(self, closing: str):
        inner = self.nested(self.expression)
        self.expect(closing)
        return inner

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            if len(value) > MAX_DIGITS:
                raise TooLarge("number literal too long")
            return sympy.Rational(value)
        if value in ("(", "[", "{"):
            return self.group({"(": ")", "[": "]", "{": "}"}[value])
        if value == "|":
            return sympy.Abs(self.group("|"))
        if kind == "char" and value.isalpha():
            return self.letter(value)
        if kind == "cmd":
            return self.command(value[1:])
        raise LatexParseError(f"unexpected {value!r}")

    def subscript(self) -> str:
        self.take()
        kind, value = self.take()
        if value != "{":
            return value
        parts = []
        while self.peek_value() != "}":
            parts.append(self.take()[1])
        self.take()
        return "".join(parts)

    def letter(self, name: str):
        if self.peek_value() == "_":
            return sympy.Symbol(f"{name}_{self.subscript()}")
        if name == "e":
            return sympy.E
        if name == "i":
            return sympy.I
        return sympy.Symbol(name)

    def command(self, name: str):
        if name == "frac":
            numerator = self.argument()
            return numerator / self.argument()
        if name == "sqrt":
            index = self.group("]") if self.peek_value() == "[" and self.take() else None
            radicand = self.argument()
            return sympy.sqrt(radicand) if index is None else sympy.root(radicand, index)
        if name == "binom":
            n = self.argument()
            return _checked_binomial(n, self.argument())
        if name == "pi":
            return sympy.pi
        if name == "infty":
            return sympy.oo
        if name in _GREEK:
            return self.letter(name) if name != "e" else sympy.E
        if name == "lfloor":
            return sympy.floor(self.group("\\rfloor"))
        if name == "lceil":
            return sympy.ceiling(self.group("\\rceil"))
        if name in _FUNCTIONS:
            return self.function(name)
        if name == "begin":
            return self.matrix()
        raise LatexParseError(f"unsupported command \\{name}")

    def braced_word(self) -> str:
        self.expect("{")
        parts = []
        while self.peek_value() != "}":
            parts.append(self.take()[1])
        self.take()
        return "".join(parts)

    def matrix(self):
        """`\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}` (also bmatrix, array with its column spec, ...)."""
        environment = self.braced_word()
        if environment not in _MATRIX_ENVIRONMENTS:
            raise LatexParseError(f"unsupported environment {environment!r}")
        if environment == "array":
            self.braced_word()
        rows, row = [], []
        while True:
            if self.peek_value() == "\\end":
                break
            row.append(self.nested(self.expression))
            separator = self.take()[1]
            if separator == "&":
                continue
            if separator not in ("\\\\", "\\end"):
                raise LatexParseError(f"unexpected {separator!r} in a matrix")
            rows.append(row)
            row = []
            if separator == "\\end":
                self.position -= 1
                break
        if row:
            rows.append(row)
        self.take()
        if self.braced_word() != environment or not rows or len({len(r) for r in rows}) != 1:
            raise LatexParseError("malformed matrix")
        return sympy.ImmutableMatrix(rows)

    def function(self, name: str):
        exponent = base = None
        if name == "log" and self.peek_value() == "_":
            self.take()
            base = self.argument()
        if self.peek_value() == "^":
            self.take()
            exponent = self.exponent()
        if self.peek_value() in ("(", "{"):
            argument = self.postfix(self.primary())
        else:  # \sin 2x means sin(2x)
            argument = self.power()
            while self.starts_factor() and not self.peek_value()[1:] in _FUNCTIONS:
                argument = argument * self.power()
        if exponent == -1 and name in _INVERSES:  # \tan^{-1} x is arctan x
            return _INVERSES[name](argument)
        value = sympy.log(argument, base) if base is not None else _FUNCTIONS[name](argument)
        return value if exponent is None else _checked_power(value, exponent)


def parse_latex(text: str):
    """sympy expression for a LaTeX scalar; raises LatexParseError or TooLarge."""
    try:
        return _Parser(text).parse()
    except RecursionError as err:
        raise TooLarge("expression nested too deeply") from err
    except (TypeError, ShapeError, NonSquareMatrixError) as err:  # matrix + number, shapes that do not fit
        raise LatexParseError(f"not a valid matrix expression: {err}") from err
