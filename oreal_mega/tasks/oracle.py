"""Credit-assignment oracle for the synthetic math task: the first response token at which a
sampled solution departs from every correct solution of its problem.

Correct solutions of a problem are built from its canonical solution (`solution` of the problem
and of its RL prompt record, "3+4=7.\\n7*5=35.\\n\\boxed{35}"): the same steps, in any order that
computes a step after every step whose result it uses, either operand order for + and *, then
the boxed answer and the stop token. A step uses an earlier step's result when one of its
operands equals that result (a coincidence with a question number makes the order stricter,
never wrong), so every text accepted here is a correct solution; a correct solution computed
another way (other steps, other groupings) counts as a departure.

The rule, on the response's text (the concatenation of its tokens' texts):
- the first error is the first character c such that no correct solution starts with text[:c+1];
  the erroneous token is the one holding c (so "7*5=36" errs at the "6", a wrong operand at the
  operand, text after the boxed answer at its first character);
- a response that stops (ends in a stop token) before completing a correct solution errs at the
  stop token;
- None when no departure can be located: the response is a correct solution, or it is truncated
  (no stop token) while still a prefix of one, or the record has no solution.
"""
import re
from collections.abc import Sequence
from itertools import accumulate, product
from os.path import commonprefix

_STEP = re.compile(r"(\d+)([-+*/])(\d+)=(\d+)\.")
_ANSWER = re.compile(r"\\boxed\{(\d+)\}")
_COMMUTATIVE = ("+", "*")


def _parse(solution: str) -> tuple[list[tuple[str, str, str, str]], str]:
    """(steps (x, op, y, z) as strings, the answer line) of a canonical solution."""
    *lines, answer = solution.split("\n")
    steps = [_STEP.fullmatch(line) for line in lines]
    if not lines or None in steps or not _ANSWER.fullmatch(answer):
        raise ValueError(f"not a canonical synthetic-math solution: {solution!r}")
    return [match.groups() for match in steps], answer


def _orders(needs: list[set[int]], done: tuple[int, ...] = ()):
    """Every order of the steps that puts each step after the steps in its `needs`."""
    if len(done) == len(needs):
        yield done
    for step, required in enumerate(needs):
        if step not in done and required <= set(done):
            yield from _orders(needs, done + (step,))


def correct_solutions(solution: str) -> list[str]:
    """The texts the oracle accepts as correct solutions of the problem, without the stop token
    (sorted; the canonical one is among them). All have the canonical length."""
    steps, answer = _parse(solution)
    needs = [{earlier for earlier in range(index) if steps[earlier][3] in (x, y)}
             for index, (x, _, y, _) in enumerate(steps)]
    variants = [[f"{x}{op}{y}={z}."] + ([f"{y}{op}{x}={z}."] if op in _COMMUTATIVE else [])
                for x, op, y, z in steps]
    texts = set()
    for order in _orders(needs):
        for lines in product(*(variants[step] for step in order)):
            texts.add("\n".join([*lines, answer]))
    return sorted(texts)


def response_token_texts(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """The text of each response token, decoded alone (special tokens kept). For the task's
    byte-level tokenizer their concatenation is the response's text wherever it is ASCII; a token
    holding part of a multi-byte character decodes to U+FFFD, which no correct solution holds, so
    departures still land on the right token."""
    return [tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for token in token_ids]


def first_error_token(solution: str | None, token_texts: Sequence[str], stopped: bool) -> int | None:
    """Index of the first erroneous response token (see the module's rule), or None.

    `token_texts`: the text of each response token, the stop token last when `stopped` (the
    rollout's finish_reason is "stop").
    """
    if solution is None:
        return None
    content = token_texts[:-1] if stopped else token_texts
    text = "".join(content)
    accepted = correct_solutions(solution)
    matched = max(len(commonprefix([text, candidate])) for candidate in accepted)
    if matched < len(text):
        ends = list(accumulate(len(piece) for piece in content))
        return next(index for index, end in enumerate(ends) if end > matched)
    if stopped and text not in accepted:
        return len(token_texts) - 1  # stopped before finishing a correct solution
    return None
