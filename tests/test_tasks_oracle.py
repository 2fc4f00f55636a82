"""The synthetic task's credit-assignment oracle: correct solutions (any valid order) → None, the first
wrong character's token otherwise, through the task tokenizer's real token ids."""
import pytest

from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.tasks.demo_model import build_task_tokenizer
from oreal_mega.tasks.oracle import correct_solutions, first_error_token, response_token_texts
from oreal_mega.tasks.synthetic_math import LEVELS, generate, write_rl_prompts

EOS = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    directory = tmp_path_factory.mktemp("tokenizer")
    build_task_tokenizer(directory)
    return AutoTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def problems():
    return generate(400, seed=5, levels=LEVELS)


def label(tokenizer, solution, response: str):
    """(first error index, the token texts) of a response given as text; stopped iff it ends in EOS."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    texts = response_token_texts(tokenizer, ids)
    if response.isascii():
        assert "".join(texts) == response
    return first_error_token(solution, texts, stopped=response.endswith(EOS)), texts


def test_hand_written_responses_of_a_two_products_problem(tokenizer, problems):
    problem = problems[2]
    assert problem["question"] == ("Ben buys 6 bags of 8 stamps and 7 bags of 2 stamps. "
                                   "How many stamps does Ben buy?")
    solution = problem["solution"]
    assert solution == "6*8=48.\n7*2=14.\n48+14=62.\n\\boxed{62}"
    assert len(correct_solutions(solution)) == 16  # 2 orders of the products × 2³ operand orders

    right = ["6*8=48.\n7*2=14.\n48+14=62.\n\\boxed{62}" + EOS,
             "2*7=14.\n8*6=48.\n14+48=62.\n\\boxed{62}" + EOS,  # other order, swapped operands
             "6*8=48.\n7*2=14.\n48+"]  # truncated (no stop token) before any departure
    for response in right:
        assert label(tokenizer, solution, response)[0] is None, response

    wrong = [  # (response, index of the first wrong token, its text)
        ("6*8=48.\n7*2=15.\n48+15=63.\n\\boxed{63}" + EOS, 12, "5"),  # a wrong result
        ("6*8=48.\n7*3=21.\n48+21=69.\n\\boxed{69}" + EOS, 9, "3"),  # a wrong operand
        ("6*8=48.\n48+14=62.\n\\boxed{62}" + EOS, 7, "4"),  # skips the second product
        ("6*8=48.\n7*2=14.\n48+14=62.\n\\boxed{63}" + EOS, 26, "3"),  # right steps, wrong box
        ("5*8=40.\n7*2=14.\n40+14=54.\n\\boxed{54}" + EOS, 0, "5"),  # the first token
        ("6*8=48.\n7*2=14.\n48+14=62.\n\\boxed{62}.", 28, "."),  # text after the answer
        ("6*8=48.\n7*2=14." + EOS, 14, EOS),  # stops before the answer
        ("6*8=4\u00e9" + EOS, 5, "\ufffd"),  # a non-ASCII character (two byte tokens)
    ]
    for response, index, text in wrong:
        found, texts = label(tokenizer, solution, response)
        assert (found, texts[found] if found is not None else None) == (index, text), response


def test_every_generated_solution_is_correct_and_every_changed_result_is_found(tokenizer, problems):
    """All levels: the canonical solution + EOS → None; changing the first digit of any step's result
    (or of the boxed answer) is found at that digit, whose token the tokenizer's offsets confirm."""
    for problem in problems:
        solution = problem["solution"]
        assert solution in correct_solutions(solution)
        assert label(tokenizer, solution, solution + EOS)[0] is None
        assert label(tokenizer, solution, solution[: len(solution) // 2])[0] is None  # truncated
        results = [i + 1 for i, ch in enumerate(solution) if ch in "={"]
        for at in results:
            digit = "1" if solution[at] != "1" else "2"
            changed = solution[:at] + digit + solution[at + 1:] + EOS
            encoded = tokenizer(changed, add_special_tokens=False, return_offsets_mapping=True)
            expected = next(i for i, (start, end) in enumerate(encoded["offset_mapping"]) if start <= at < end)
            assert label(tokenizer, solution, changed)[0] == expected, changed


def test_commutative_operands_and_dependency_orders():
    # (6 + 7) * (14 - 7): the two inner steps in either order, + and * operands either way
    solutions = correct_solutions("6+7=13.\n14-7=7.\n13*7=91.\n\\boxed{91}")
    assert len(solutions) == 8
    assert "14-7=7.\n7+6=13.\n7*13=91.\n\\boxed{91}" in solutions
    assert not any(text.startswith("7-14") or text.startswith("13*7") for text in solutions)
    # a chain: nothing moves
    assert correct_solutions("66-17=49.\n49/7=7.\n\\boxed{7}") == ["66-17=49.\n49/7=7.\n\\boxed{7}"]
    with pytest.raises(ValueError, match="not a canonical"):
        correct_solutions("the answer is 7")


def test_rl_prompt_records_carry_the_solution(tmp_path, tokenizer, problems):
    [record] = read_prompts(write_rl_prompts(tmp_path / "rl.jsonl", problems[:1]))
    solution = record.extra["solution"]
    assert solution == problems[0]["solution"]
    assert label(tokenizer, solution, solution + EOS)[0] is None
    assert first_error_token(None, ["1", EOS], stopped=True) is None  # an older file: no solution
