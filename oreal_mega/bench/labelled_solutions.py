"""A labelled set of public-style math solutions, generated here (seeded), to measure a verifier's recall and
false passes: GSM8K reference solutions (`<<a*b=c>>` calculator notes, a final `#### N` line) and the ways
models answer GSM8K, MATH reference solutions (boxed answers in running text, a check after the box, one value
boxed in two forms, mixed numbers, words in the box), Minerva's "Final Answer: The final answer is $X$. I hope it
is correct." and AIME integers (`\\boxed{072}`).

Every solution is judged against its own gold (label: correct) and against the gold of another problem of the
same style (label: wrong). The `no answer committed` style holds responses that end by rejecting or doubting a
number: judged against that number as gold, they are wrong (they never state it as their answer), so a verifier
that takes the last number of running text passes them falsely.
"""
import random
import re
from dataclasses import dataclass
from fractions import Fraction

from oreal_mega.bench.verifier import _expression, _fraction, _interval_or_tuple, _radical

NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Mark")
ITEMS = ("apples", "clips", "stickers", "cookies", "marbles", "pencils", "books", "cards")


@dataclass(frozen=True)
class Item:
    style: str
    response: str
    gold: str
    correct: bool  # the label: does the response answer the gold?


def _gsm8k_problem(rng: random.Random) -> tuple[list[str], int, str, str]:
    """(solution steps with calculator notes, answer, name, item) of a three-step word problem."""
    name, thing = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(3)
    if kind == 0:  # sold some, then half as many
        first = 2 * rng.randint(6, 300)
        half = first // 2
        return [f"{name} sold {first}/2 = <<{first}/2={half}>>{half} {thing} in May.",
                f"{name} sold {first}+{half} = <<{first}+{half}={first + half}>>{first + half} {thing} altogether."], \
            first + half, name, thing
    if kind == 1:  # bags of c each, then gave some away
        bags, each, start = rng.randint(2, 30), rng.randint(2, 50), rng.randint(0, 100)
        bought = bags * each
        given = rng.randint(1, start + bought)
        total = start + bought
        return [f"{name} bought {bags}*{each} = <<{bags}*{each}={bought}>>{bought} {thing}.",
                f"Then {name} had {start}+{bought} = <<{start}+{bought}={total}>>{total} {thing}.",
                f"After giving some away, {name} has {total}-{given} = <<{total}-{given}={total - given}>>"
                f"{total - given} {thing} left."], total - given, name, thing
    price, count, paid = rng.randint(2, 90), rng.randint(2, 40), 0  # money with thousands
    cost = price * count * 25
    paid = cost + rng.randint(1, 20) * 100
    return [f"Each box costs {price}*25 = $<<{price}*25={price * 25}>>{price * 25}.",
            f"{count} boxes cost {price * 25}*{count} = $<<{price * 25}*{count}={cost}>>{cost}.",
            f"The change is {paid}-{cost} = $<<{paid}-{cost}={paid - cost}>>{paid - cost}."], \
        paid - cost, name, "dollars"


def _gsm8k_reference(rng):
    steps, answer, _, _ = _gsm8k_problem(rng)
    return "\n".join(steps) + f"\n#### {answer}", str(answer)


def _gsm8k_model(rng):
    steps, answer, name, thing = _gsm8k_problem(rng)
    work = re.sub(r"<<[^>]*>>", "", " ".join(steps))
    shown = f"{answer:,}" if rng.random() < 0.3 else str(answer)
    endings = [f"\nThe answer is {shown}.", f"\n\n**Answer:** {shown}", f"\nAnswer: {shown}",
               f"\n#### {shown}", f"\n\nThe final answer is ${shown}$.",
               f"\n\nTherefore, the answer is $\\boxed{{{shown}}}$.",
               f"\n\n**Final Answer:** {shown} {thing}"]
    return work + rng.choice(endings), str(answer)


def _gsm8k_model_unmarked(rng):
    """Model answers that state the result only in a sentence (no marker): only a last-number rule reads them."""
    steps, answer, name, thing = _gsm8k_problem(rng)
    work = re.sub(r"<<[^>]*>>", "", " ".join(steps[:-1]))
    return work + f" So {name} ends up with {answer} {thing}.", str(answer)


def _math_answer(rng) -> tuple[str, list[str]]:
    """(gold, equivalent forms) of a MATH-style answer."""
    kind = rng.randrange(6)
    if kind == 0:
        n = rng.randint(-50, 5000)
        return str(n), [str(n), f"{n:,}" if abs(n) >= 1000 else str(n)]
    if kind == 1:
        whole, numerator, denominator = rng.randint(1, 12), rng.randint(1, 8), rng.randint(9, 13)
        improper = whole * denominator + numerator
        return f"\\frac{{{improper}}}{{{denominator}}}", [f"{whole}\\frac{{{numerator}}}{{{denominator}}}",
                                                          f"\\frac{{{improper}}}{{{denominator}}}"]
    generator = (_fraction, _radical, _interval_or_tuple, _expression)[kind - 2]
    gold, right, _ = generator(rng)
    return gold, right


def value_key(gold: str):
    """What identifies a generated gold's value, so that a mismatched pair never has two equal values: fractions
    (plain, mixed, times π) by their exact value, every other generated form is written one way only."""
    fraction = re.fullmatch(r"\\frac\{(\d+)(\\pi)?\}\{(\d+)\}", gold)
    if fraction:
        return Fraction(int(fraction.group(1)), int(fraction.group(3))), bool(fraction.group(2))
    return (Fraction(int(gold)), False) if re.fullmatch(r"-?\d+", gold) else gold


def _math_reference(rng):
    gold, forms = _math_answer(rng)
    form = rng.choice(forms)
    prose = ("We begin by simplifying the given expression, using $a^2 - b^2 = (a-b)(a+b)$. "
             "Substituting the values we found, and collecting terms, ")
    variant = rng.randrange(5)
    if variant == 0:
        return prose + f"the answer is $\\boxed{{{form}}}$.", gold
    if variant == 1:  # a check after the box
        return prose + f"we get $\\boxed{{{form}}}$. To check, the answer is consistent since $3 + 4 = 7$, " \
                       "and we verified the answer is correct.", gold
    if variant == 2:  # one value boxed in two forms
        second = rng.choice([f for f in forms if f != form] or forms)
        return prose + f"the result is $\\boxed{{{form}}}$, or $\\boxed{{{second}}}$.", gold
    if variant == 3 and rng.random() < 0.5 and not any(c in form for c in "(),[]x"):  # words in the box
        return prose + f"so $\\boxed{{\\text{{the answer is }} {form}}}$.", gold
    return prose + f"we find $\\boxed{{{form}}}$. Substituting back, $2(1) + 3 = 5$ checks out.", gold


def _minerva(rng):
    gold, forms = _math_answer(rng)
    return ("Let the number be $x$. Then $3x + 2 = 11$ gives the key equation, which we solve step by step.\n"
            f"Final Answer: The final answer is ${rng.choice(forms)}$. I hope it is correct."), gold


def _aime(rng):
    n = rng.randint(0, 999)
    forms = [f"Hence $\\boxed{{{n:03d}}}$.", f"Then $m + n = \\boxed{{{n}}}$.", f"The answer is $\\boxed{{{n}}}$.",
             f"\n**Answer:** {n:03d}"]
    return "The probability is $\\frac{m}{n}$ in lowest terms, so we add the two. " + rng.choice(forms), str(n)


def _uncommitted(rng):
    """A response that ends on a number it does not give as its answer; that number is the gold here."""
    n = rng.randint(2, 999)
    endings = [f"Checking the second case, the total would be {n}, but that contradicts the condition, so we must "
               f"redo the count.",
               f"I am not sure whether the sum is {n - 1} or {n}.",
               f"So far we have {n // 2} in the first group; the second group still needs to be counted, giving {n}?"]
    return "We split the count into two cases. " + rng.choice(endings), str(n)


STYLES = {"GSM8K reference (#### N)": _gsm8k_reference, "GSM8K model, marked answer": _gsm8k_model,
          "GSM8K model, answer in a sentence": _gsm8k_model_unmarked, "MATH reference": _math_reference,
          "Minerva": _minerva, "AIME": _aime}
UNCOMMITTED = "no answer committed (gold = last number)"


def labelled_set(per_style: int, seed: int = 0) -> list[Item]:
    """`per_style` solutions of each style, each with its own gold (correct) and another's gold (wrong), plus
    `per_style` uncommitted responses (wrong)."""
    rng = random.Random(seed)
    items = []
    for style, make in STYLES.items():
        solutions = [make(rng) for _ in range(per_style)]
        for index, (response, gold) in enumerate(solutions):
            items.append(Item(style, response, gold, True))
            other = next((solutions[(index + step) % per_style][1] for step in range(1, per_style)
                          if value_key(solutions[(index + step) % per_style][1]) != value_key(gold)), None)
            if other is not None:
                items.append(Item(style, response, other, False))
    items += [Item(UNCOMMITTED, *_uncommitted(rng), False) for _ in range(per_style)]
    return items
