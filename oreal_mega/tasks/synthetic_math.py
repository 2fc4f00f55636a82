"""A seeded synthetic math task small enough for a ~1M-parameter model trained on CPU.

Every problem is multi-step integer arithmetic or a small algebra word problem. Its solution is
a fixed chain of one-operation steps, "3+4=7.\\n7*5=35.\\n\\boxed{35}", so a tiny model can learn
the format quickly and its remaining errors are arithmetic slips that RL can fix. By default
operands stay in 0..20 and factors in 2..9 (both adjustable); solutions stay under ~45 tokens
of the task tokenizer, all answers are non-negative integers.

Levels (the number of steps grows with the level):
    1  a+b, a-b, one-step word problems
    2  a+b-c, a*b, two-step word problems with a product
    3  (a+b)*c-d, solve a*x+b=c, word problems: a sum, then a product
    4  a*b+c*d, (a+b)*(c-d)... three steps with two products, solve a*x-b=c+d
    5  four steps: a*b+c*d-e, (a+b)*c-d*e

    problems = generate(1000, seed=0, levels=[1, 2, 3])
    sft, rl, held_out = make_splits([5000, 2000, 500], seed=0, levels=[1, 2, 3, 4])
"""
import json
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

MAX_OPERAND = 20
MAX_FACTOR = 9
LEVELS = (1, 2, 3, 4, 5)

NAMES = ("Tom", "Ann", "Ben", "Mia", "Sam", "Lily", "Max", "Eva")
ITEMS = ("apples", "books", "coins", "cards", "pens", "stamps", "eggs", "shells")
CONTAINERS = ("boxes", "bags", "packs", "jars")


class _Steps:
    """Builds a solution step by step: each call records "x op y=z" and returns z."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, x: int, op: str, y: int) -> int:
        if op == "/" and x % y:
            raise ValueError(f"{x}/{y} is not an integer")
        result = x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x // y
        self.lines.append(f"{x}{op}{y}={result}.")
        return result


class _Numbers:
    """The random draws of one problem: operands in 0..max_operand, factors in 2..max_factor."""

    def __init__(self, rng: random.Random, max_operand: int, max_factor: int):
        self.rng, self.max_operand, self.max_factor = rng, max_operand, max_factor
        self.factors = range(2, max_factor + 1)
        self.half = max_operand // 2  # operands that get multiplied afterwards

    def operand(self, low: int = 0, high: int | None = None) -> int:
        return self.rng.randint(low, self.max_operand if high is None else high)

    def factor(self) -> int:
        return self.rng.choice(self.factors)

    def small_factor(self) -> int:
        return self.rng.randint(2, max(2, (self.max_factor + 1) // 2))

    def choice(self, options):
        return self.rng.choice(options)


Template = Callable[[_Numbers, _Steps], str]  # returns the question; answer = last step


def _person(num: _Numbers) -> tuple[str, str]:
    return num.choice(NAMES), num.choice(ITEMS)


# ---- level 1 --------------------------------------------------------------------------------

def _add(num, step):
    a, b = num.operand(), num.operand()
    step(a, "+", b)
    return f"What is {a} + {b}?"


def _sub(num, step):
    a = num.operand()
    b = num.operand(0, a)
    step(a, "-", b)
    return f"What is {a} - {b}?"


def _word_gain_or_loss(num, step):
    name, item = _person(num)
    a = num.operand(1)
    if num.choice((True, False)):
        b = num.operand(1)
        step(a, "+", b)
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
    b = num.operand(1, a)
    step(a, "-", b)
    return f"{name} has {a} {item} and gives away {b}. How many {item} does {name} have now?"


# ---- level 2 --------------------------------------------------------------------------------

def _add_sub(num, step):
    a, b = num.operand(), num.operand()
    c = num.operand(0, a + b)
    step(step(a, "+", b), "-", c)
    return f"What is {a} + {b} - {c}?"


def _mul(num, step):
    a, b = num.factor(), num.factor()
    step(a, "*", b)
    return f"What is {a} * {b}?"


def _word_groups(num, step):
    name, item = _person(num)
    a, b = num.factor(), num.factor()
    total = step(a, "*", b)
    c = num.operand(1, min(total, num.max_operand))
    step(total, "-", c)
    return (f"{name} has {a} {num.choice(CONTAINERS)} with {b} {item} in each and gives away "
            f"{c}. How many {item} are left?")


# ---- level 3 --------------------------------------------------------------------------------

def _sum_times_minus(num, step):
    a, b, c = num.operand(0, num.half), num.operand(0, num.half), num.small_factor()
    product = step(step(a, "+", b), "*", c)
    d = num.operand(0, min(product, num.max_operand))
    step(product, "-", d)
    return f"What is ({a} + {b}) * {c} - {d}?"


def _solve_linear(num, step):
    a, x, b = num.factor(), num.operand(0, num.half + 2), num.operand()
    c = a * x + b
    step(step(c, "-", b), "/", a)
    return f"Solve {a}x + {b} = {c} for x."


def _word_two_people(num, step):
    name, item = _person(num)
    other = num.choice([someone for someone in NAMES if someone != name])
    a, b = num.operand(1), num.operand(1)
    mine = step(a, "+", b)
    c = num.factor()
    step(mine, "*", c)
    return (f"{name} has {a} {item} and finds {b} more. {other} has {c} times as many {item} "
            f"as {name}. How many {item} does {other} have?")


# ---- level 4 --------------------------------------------------------------------------------

def _two_products(num, step):
    a, b, c, d = num.factor(), num.factor(), num.factor(), num.factor()
    step(step(a, "*", b), "+", step(c, "*", d))
    return f"What is {a} * {b} + {c} * {d}?"


def _sum_times_difference(num, step):
    a, b, d = num.operand(0, num.half), num.operand(0, num.half), num.operand(0, num.half)
    c = d + num.factor()
    step(step(a, "+", b), "*", step(c, "-", d))
    return f"What is ({a} + {b}) * ({c} - {d})?"


def _solve_linear_two_sided(num, step):
    a, x = num.factor(), num.operand(1, num.half + 2)
    b = num.operand(0, min(a * x, num.max_operand))
    d = num.operand(0, min(a * x - b, num.max_operand))
    c = a * x - b - d
    step(step(step(c, "+", d), "+", b), "/", a)
    return f"Solve {a}x - {b} = {c} + {d} for x."


def _word_shopping(num, step):
    name, item = _person(num)
    a, b, c, d = num.factor(), num.factor(), num.factor(), num.factor()
    step(step(a, "*", b), "+", step(c, "*", d))
    return (f"{name} buys {a} {num.choice(CONTAINERS)} of {b} {item} and {c} "
            f"{num.choice(CONTAINERS)} of {d} {item}. How many {item} does {name} buy?")


# ---- level 5 --------------------------------------------------------------------------------

def _two_products_minus(num, step):
    a, b, c, d = num.factor(), num.factor(), num.factor(), num.factor()
    total = step(step(a, "*", b), "+", step(c, "*", d))
    e = num.operand(0, min(total, num.max_operand))
    step(total, "-", e)
    return f"What is {a} * {b} + {c} * {d} - {e}?"


def _sum_times_minus_product(num, step):
    a, b, c = num.operand(1, num.half), num.operand(1, num.half), num.factor()
    first = (a + b) * c  # >= 4, so some factor pair fits below it
    d, e = num.choice([(d, e) for d in num.factors for e in num.factors if d * e <= first])
    step(step(step(a, "+", b), "*", c), "-", step(d, "*", e))
    return f"What is ({a} + {b}) * {c} - {d} * {e}?"


TEMPLATES: dict[int, tuple[Template, ...]] = {
    1: (_add, _sub, _word_gain_or_loss),
    2: (_add_sub, _mul, _word_groups),
    3: (_sum_times_minus, _solve_linear, _word_two_people),
    4: (_two_products, _sum_times_difference, _solve_linear_two_sided, _word_shopping),
    5: (_two_products_minus, _sum_times_minus_product),
}


def solution_text(steps: Sequence[str], answer: int) -> str:
    """The worked solution: one step per line, then the boxed answer (the SFT target).
    ".\n" is one token of the task tokenizer, so each step costs one separator token."""
    return "\n".join([*steps, f"\\boxed{{{answer}}}"])


def _one_problem(num: _Numbers, level: int) -> dict:
    step = _Steps()
    question = num.choice(TEMPLATES[level])(num, step)
    answer = int(step.lines[-1].rsplit("=", 1)[1].rstrip("."))
    return {"question": question, "gold_answer": str(answer), "level": level,
            "solution": solution_text(step.lines, answer)}


def _check_levels(levels: Iterable[int]) -> list[int]:
    levels = list(levels)
    if not levels:
        raise ValueError("levels is empty")
    unknown = [level for level in levels if level not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; levels are {sorted(TEMPLATES)}")
    return levels


def generate(n: int, seed: int, levels: Iterable[int] = (1, 2, 3), *,
             max_operand: int = MAX_OPERAND, max_factor: int = MAX_FACTOR,
             exclude: Iterable[str] = (), max_attempts: int = 200) -> list[dict]:
    """`n` distinct problems (by question text, none in `exclude`), levels assigned round-robin
    over `levels` and then shuffled. Same arguments, same list. Operands are drawn from
    0..max_operand and factors from 2..max_factor: smaller ranges make an easier task.

    Each problem: {"question", "gold_answer" (str), "level", "solution" (ends in \\boxed{})}.
    Raises ValueError when a level runs out of distinct problems.
    """
    levels = _check_levels(levels)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_operand < 4 or max_factor < 3:
        raise ValueError(f"need max_operand >= 4 and max_factor >= 3, got {max_operand}, "
                         f"{max_factor}")
    rng = random.Random(seed)
    num = _Numbers(rng, max_operand, max_factor)
    seen = set(exclude)
    problems = []
    for index in range(n):
        level = levels[index % len(levels)]
        for _ in range(max_attempts):
            problem = _one_problem(num, level)
            if problem["question"] not in seen:
                break
        else:
            raise ValueError(f"level {level} ran out of distinct problems after "
                             f"{sum(p['level'] == level for p in problems)}; ask for fewer")
        seen.add(problem["question"])
        problems.append(problem)
    rng.shuffle(problems)
    return problems


def make_splits(sizes: Sequence[int], seed: int, levels: Iterable[int] = (1, 2, 3),
                **ranges) -> list[list[dict]]:
    """Disjoint problem sets (no question text in common), e.g. `sft, rl, held_out =
    make_splits([5000, 2000, 500], seed)`; each set is balanced over `levels`. `ranges`:
    `max_operand` / `max_factor` as in `generate`."""
    levels = list(levels)
    splits, seen = [], set()
    for index, size in enumerate(sizes):
        split = generate(size, seed + 1_000_003 * index, levels, exclude=seen, **ranges)
        seen.update(problem["question"] for problem in split)
        splits.append(split)
    return splits


# ---- the project's JSONL formats --------------------------------------------------------------

def _write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_rl_prompts(path: str | Path, problems: Sequence[dict],
                     pass_rates: Sequence[float] | None = None) -> Path:
    """RL prompts: `question`, `gold_answer`, `level`, `solution` (the worked solution, for the
    credit-assignment oracle of `oreal_mega.tasks.oracle`) and, when given, `pass_rate`."""
    if pass_rates is not None and len(pass_rates) != len(problems):
        raise ValueError(f"{len(pass_rates)} pass rates for {len(problems)} problems")
    rows = []
    for index, problem in enumerate(problems):
        row = {"question": problem["question"], "gold_answer": problem["gold_answer"],
               "level": problem["level"], "solution": problem["solution"]}
        if pass_rates is not None:
            row["pass_rate"] = float(pass_rates[index])
        rows.append(row)
    return _write_jsonl(path, rows)


def write_sft(path: str | Path, problems: Sequence[dict]) -> Path:
    """SFT pairs: `prompt` (the question) and `response` (the worked solution)."""
    return _write_jsonl(path, ({"prompt": p["question"], "response": p["solution"]}
                               for p in problems))


def write_eval(path: str | Path, problems: Sequence[dict]) -> Path:
    """MATH-500-style evaluation rows: `problem`, `answer` and `level`."""
    return _write_jsonl(path, ({"problem": p["question"], "answer": p["gold_answer"],
                                "level": p["level"]} for p in problems))
