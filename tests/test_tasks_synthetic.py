"""The synthetic math task: seeded, levelled, arithmetically right, verifiable, disjoint splits."""
import json
import re
import subprocess
import sys
from collections import Counter

import pytest
import sympy

from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.tasks.synthetic_math import (
    LEVELS,
    generate,
    make_splits,
    write_eval,
    write_rl_prompts,
    write_sft,
)
from oreal_mega.verifier import VerifierPool

STEP = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+)\.$")


@pytest.fixture(scope="module")
def problems():
    return generate(400, seed=5, levels=LEVELS)


def test_generation_is_deterministic_per_seed():
    first = generate(60, seed=3, levels=[1, 2, 3])
    assert first == generate(60, seed=3, levels=[1, 2, 3])
    assert first != generate(60, seed=4, levels=[1, 2, 3])
    assert len({p["question"] for p in first}) == 60


def test_levels_are_balanced_and_get_longer(problems):
    counts = Counter(p["level"] for p in problems)
    assert counts == {level: 80 for level in LEVELS}
    mean_steps = [sum(p["solution"].count("=") for p in problems if p["level"] == level)
                  / counts[level] for level in LEVELS]
    assert mean_steps == sorted(mean_steps) and len(set(mean_steps)) == len(LEVELS), mean_steps
    assert {p["level"] for p in generate(30, seed=0, levels=[2, 4])} == {2, 4}


def test_every_step_is_right_and_the_gold_is_the_boxed_last_result(problems):
    for problem in problems:
        *steps, boxed = problem["solution"].split("\n")
        assert boxed == f"\\boxed{{{problem['gold_answer']}}}"
        for step in steps:
            x, op, y, z = STEP.match(step).groups()
            assert sympy.sympify(f"{x}{op}{y}") == int(z), (problem, step)
        assert steps[-1].endswith(f"={problem['gold_answer']}.")
        assert int(problem["gold_answer"]) >= 0


def test_gold_matches_an_independent_reading_of_the_question(problems):
    """Expressions are evaluated by sympy; equations are solved by sympy."""
    checked = 0
    for problem in problems:
        question, gold = problem["question"], sympy.Integer(problem["gold_answer"])
        if expression := re.fullmatch(r"What is (.+)\?", question):
            assert sympy.sympify(expression.group(1)) == gold, question
            checked += 1
        elif equation := re.fullmatch(r"Solve (.+) = (.+) for x\.", question):
            x = sympy.Symbol("x")
            lhs, rhs = (sympy.sympify(side.replace("x", "*x")) for side in equation.groups())
            assert sympy.solve(sympy.Eq(lhs, rhs), x) == [gold], question
            checked += 1
    assert checked > len(problems) / 2


def test_solutions_verify_as_correct_and_perturbed_answers_as_wrong(problems):
    chosen = problems[:150]
    responses = [p["solution"] for p in chosen]
    perturbed = [p["solution"].replace(f"\\boxed{{{p['gold_answer']}}}",
                                       f"\\boxed{{{int(p['gold_answer']) + 1}}}") for p in chosen]
    golds = [p["gold_answer"] for p in chosen]
    with VerifierPool(num_workers=2, timeout_s=10) as pool:
        verdicts = pool.verify_batch(responses + perturbed, golds + golds)
    assert all(v.status == "correct" for v in verdicts[:len(chosen)])
    assert all(v.status == "wrong" for v in verdicts[len(chosen):])


def test_splits_are_disjoint_and_balanced():
    sft, rl, held_out = make_splits([300, 200, 100], seed=1, levels=[1, 2, 3])
    questions = [{p["question"] for p in split} for split in (sft, rl, held_out)]
    assert [len(q) for q in questions] == [300, 200, 100]
    assert not (questions[0] & questions[1] or questions[0] & questions[2]
                or questions[1] & questions[2])
    assert Counter(p["level"] for p in held_out) == {1: 34, 2: 33, 3: 33}
    assert make_splits([300, 200, 100], seed=1, levels=[1, 2, 3])[2] == held_out


def test_number_ranges_bound_the_operands():
    easy = generate(300, seed=2, levels=[1, 2], max_operand=10, max_factor=5)
    for problem in easy:
        if match := re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", problem["question"]):
            a, op, b = match.groups()
            bound = 5 if op == "*" else 10
            assert int(a) <= bound and int(b) <= bound, problem
    assert max(int(p["gold_answer"]) for p in easy) <= 25
    with pytest.raises(ValueError, match="max_operand >= 4 and max_factor >= 3"):
        generate(5, seed=0, max_factor=2)


def test_bad_levels_and_exhausted_levels_raise():
    with pytest.raises(ValueError, match=r"unknown level\(s\) \[0\]"):
        generate(5, seed=0, levels=[0, 1])
    with pytest.raises(ValueError, match="level 1 ran out of distinct problems"):
        generate(40_000, seed=0, levels=[1])  # level 1 has about 35 000 distinct questions


def test_writers_produce_the_project_formats(tmp_path, problems):
    chosen = problems[:5]
    rl = write_rl_prompts(tmp_path / "rl.jsonl", chosen, pass_rates=[0.0, 0.25, 0.5, 0.75, 1.0])
    records = read_prompts(rl)
    assert [(r.question, r.gold, r.pass_rate, r.extra) for r in records] == [
        (p["question"], p["gold_answer"], rate, {"level": p["level"], "solution": p["solution"]})
        for p, rate in zip(chosen, [0.0, 0.25, 0.5, 0.75, 1.0])]
    evaluation = read_prompts(write_eval(tmp_path / "eval.jsonl", chosen))
    assert [(r.question, r.gold) for r in evaluation] == [(p["question"], p["gold_answer"])
                                                          for p in chosen]
    assert json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[0]).keys() == {
        "problem", "answer", "level"}
    sft = [json.loads(line) for line in write_sft(tmp_path / "sft.jsonl", chosen)
           .read_text().splitlines()]
    assert sft == [{"prompt": p["question"], "response": p["solution"]} for p in chosen]
    with pytest.raises(ValueError, match="2 pass rates for 5 problems"):
        write_rl_prompts(tmp_path / "x.jsonl", chosen, pass_rates=[0.1, 0.2])


def test_data_command_reports_bad_levels_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "oreal_mega", "data", "synthetic", "--out",
                           str(tmp_path / "x"), "--levels", "1", "7"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--levels 1 7 --max-operand 20 --max-factor 9: unknown level(s) [7]" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag, value, message", [("--hidden-size", "100", "--hidden-size must be a positive multiple of 64, got 100"),
                                                  ("--layers", "0", "--layers must be >= 1, got 0")])
def test_data_command_refuses_a_bad_model_shape(tmp_path, flag, value, message):
    done = subprocess.run([sys.executable, "-m", "oreal_mega", "data", "synthetic", "--out", str(tmp_path / "x"),
                           flag, value], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and message in done.stderr
    assert not (tmp_path / "x").exists()
