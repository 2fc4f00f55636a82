"""Answer extraction and the per-response verdict (statuses, truncation, error reporting)."""
import pytest

from oreal_mega.verifier import STATUSES, Verdict, extract_answer, verify


@pytest.mark.parametrize("text,expected", [
    ("so the answer is \\boxed{42}.", "42"),
    ("\\boxed{1} then corrected: \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{{2}}}", "\\frac{\\sqrt{3}}{{2}}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are not grouping
    ("\\boxed{\\left\\{ x \\right\\}}", "\\left\\{ x \\right\\}"),
    ("\\fbox{7}", "7"),
    ("\\boxed{3} and \\fbox{4}", "4"),
    ("$\\boxed 5$", "5"),
    ("\\boxed{ 12 }", "12"),
    ("The answer is 42.", None),  # no guessing from free text
    ("\\boxed{}", None),
    ("\\boxed{   }", None),
    ("\\boxed{\\frac{1}{2}", None),  # never closed (cut off)
    ("\\boxed{3} ... \\boxed{\\frac{1", None),  # the last box is unfinished: no fallback to an earlier one
    ("\\boxed{9}</think>The final answer is \\boxed{10}", "10"),
    ("<think>maybe \\boxed{9}</think>so it is 10", None),  # boxes inside the thinking do not count
    ("", None),
    ("\\boxedx", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_deeply_nested_braces_is_iterative():
    depth = 50_000
    assert extract_answer("\\boxed{" + "{" * depth + "1" + "}" * depth + "}") == "{" * depth + "1" + "}" * depth


def test_verdict_statuses():
    assert verify("thus \\boxed{\\dfrac{1}{2}}", "0.5") == Verdict(True, "correct", "\\dfrac{1}{2}")
    assert verify("thus \\boxed{3}", "4") == Verdict(False, "wrong", "3")
    assert verify("I think it is 4", "4") == Verdict(False, "no_answer", None)
    truncated = verify("so \\boxed{4}", "4", finished=False)
    assert (truncated.correct, truncated.status) == (False, "truncated")
    assert {"correct", "wrong", "no_answer", "truncated", "timeout", "error"} == set(STATUSES)


def test_gold_given_as_boxed_solution():
    assert verify("\\boxed{6}", "We compute 2*3 = \\boxed{6}.").correct


def test_verify_rejects_non_string_input():
    with pytest.raises(TypeError):
        verify(None, "1")


ADVERSARIAL_RESPONSES = [
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{" + "+".join(f"x_{{{i}}}" for i in range(20_000)) + "}",
    "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "\\boxed{\\frac{1}{2\\right)}}",
    "\\boxed{\\left(\\left(\\left(}",
    "\\boxed{(x+2)^{100000000}}",
    "\\boxed{100000000!}",
    "\\boxed{10^{10^{10^{10}}} - 10^{10^{10^{10}}}}",
    "\\boxed{\\sqrt{\\sqrt{\\sqrt{\\sqrt{\\sqrt{}}}}}}",
    "\\boxed{" + "1" * 100_000 + "}",
    "\\boxed{\\begin{pmatrix}" + "1&" * 3000 + "1\\end{pmatrix}}",
    "\\boxed{" + ",".join(["1"] * 50_000) + "}",
]


@pytest.mark.parametrize("response", ADVERSARIAL_RESPONSES, ids=[str(i) for i in range(len(ADVERSARIAL_RESPONSES))])
def test_adversarial_answers_are_judged_quickly_and_wrong(response):
    verdict = verify(response, "1")
    assert verdict.status == "wrong" and not verdict.correct
