"""No false passes, and the answer forms real rollouts and gold sets use.

Every expectation is a hand judgement of whether a grader should accept `pred` for `gold`; the false-pass probes
are pairs of different answers that a lenient rule could make equal.
"""
import time

import pytest

from oreal_mega.verifier import answers_equal, verify

Y, N = True, False

FALSE_PASS_PROBES = [  # undefined / non-finite values equal nothing, not even each other
    ("1:00", "12:00", N), ("1:0", "5:0", N), ("2:0", "3:0", N), ("\\frac{1}{0}", "\\frac{7}{0}", N),
    ("\\tan(\\pi/2)", "5/0", N), ("\\tan\\frac{\\pi}{2}", "\\cot 0", N), ("1/0", "\\infty", N),
    ("\\frac{0}{0}", "0", N), ("0/0", "1", N), ("0^0", "1", N), ("0^{-1}", "\\infty", N), ("\\ln 0", "-\\infty", N),
    ("\\log(0)", "\\ln(0)", N), ("\\infty-\\infty", "0", N), ("0\\cdot\\infty", "0", N),
    ("\\frac{\\infty}{\\infty}", "1", N), ("-\\infty", "\\infty", N), ("\\infty", "-\\infty", N),
    ("(-\\infty, 1)", "(-\\infty, 1]", N), ("[1, \\infty)", "(1, \\infty)", N), ("(1,2)", "[1,2]", N),
    ("\\{\\}", "\\{0\\}", N), ("\\emptyset", "0", N), ("\\varnothing", "\\{1\\}", N),
    ("\\varnothing", "\\emptyset", Y), ("\\{ \\}", "\\emptyset", Y), ("∅", "\\varnothing", Y),
    # sampling only at positive points would equate these: a negative point separates them
    ("|x|", "x", N), ("\\sqrt{x^2}", "x", N), ("(x^2)^{1/2}", "x", N), ("\\frac{|x|}{x}", "1", N),
    ("\\sqrt{x^2}", "|x|", Y), ("x^{2/3}", "\\sqrt[3]{x^2}", Y), ("\\lfloor x \\rfloor", "x", N),
    # comma + space is a list, not a thousands separator
    ("32, 349", "32349", N), ("1, 000", "1000", N), ("12, 345, 678", "12345678", N), ("32,349", "32349", Y),
    ("32,\\! 349", "32349", Y), ("11,\\!111,\\!111,\\!100", "11111111100", Y),
    # clock times compare as times, not as 12/00
    ("12:30", "6:15", N), ("2:30", "1:15", N), ("10:00", "1:00", N), ("12:45", "12:54", N), ("3:00", "3:00", Y),
    ("1:00 pm", "1:00 am", N), ("1:00 p.m.", "13:00", Y), ("9:05", "9:50", N),
    ("3:00 \\text{ a.m.}", "3:00 \\text{p.m.}", N), ("3:00 \\text{ PM}", "15:00", Y), ("3:00 pm", "3:00", Y),
    # ratios: part by part; proportional only without zero parts and without clock times
    ("2:4", "1:2", Y), ("3:6:9", "1:2:3", Y), ("2:1", "1:2", N), ("1:2:3", "1:2", N), ("0:1", "0:2", N),
    ("3:4", "\\frac{3}{4}", Y), ("4:3", "\\frac{3}{4}", N),
    # units must agree when both sides name one
    ("5 cm", "5 m", N), ("5\\text{ cm}^2", "5\\text{ cm}", N), ("3 hours", "3 minutes", N), ("5 cm", "5", Y),
    ("5", "5\\text{ cm}", Y), ("12 inches", "12 in", Y), ("7 feet", "7 ft", Y), ("10 square meters", "10 m^2", Y),
    # lenient normalisations that must not equate different answers
    ("3m", "3", N), ("x=3", "y=3", N), ("(p,q)=(3,2)", "(p,q)=(2,3)", N), ("(2,3)", "(p,q)=(3,2)", N),
    ("5, 4", "AB=4, CD=5", N), ("AB=5, CD=4", "AB=4, CD=5", N), ("2x=6", "6", N), ("x+y=5", "5", N),
    ("6", "xy=6", N), ("6", "ab = 6", N),  # a product of small letters is an equation, not a label
    ("\\frac{1}{2}", "\\frac{1}{2}x", N), ("x<1", "x\\leq1", N), ("x>1", "x<1", N), ("-x>-1", "x>1", N),
    ("x\\neq 2", "x=2", N), ("0.\\overline{3}", "0.3", N), ("0.\\overline{3}", "0.33", N),
    ("0.1\\overline{6}", "\\frac{1}{5}", N), ("1,1,2", "1,2,2", N), ("1, 2", "1, 1, 2", N),
    ("\\frac{\\pi}{3}", "30^\\circ", N), ("90^\\circ", "\\frac{\\pi}{2}", N), ("60", "\\frac{\\pi}{3}", N),
    ("28", "0.28", N), ("28\\%", "0.028", N), ("x\\in(0,1)", "x\\in[0,1)", N), ("(0,1)", "0\\leq f(x)<1", N),
    ("[-2,7]", "-2<x\\leq7", N), ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", N),
    ("\\begin{pmatrix}1&2\\end{pmatrix}+\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}2&3\\end{pmatrix}", N),
    ("\\text{even}", "\\text{odd}", N), ("A", "B", N), ("A", "A'", N), ("f(x)", "f'(x)", N), ("5!", "5", N),
]
LABELLED_GOLDS = [
    ("(3,2)", "(p,q)=(3,2)", Y), ("(p,q)=(3,2)", "(3,2)", Y), ("4, 5", "AB=4, CD=5", Y), ("AB=4, CD=5", "4, 5", Y),
    ("CD=5, AB=4", "AB=4, CD=5", Y), ("1", "|AB| = 1", Y), ("|AB|=1", "1", Y), ("7", "f(2)=7", Y),
    ("\\frac{1}{\\sqrt{6}}", "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", Y), ("7:32", "S_{MBCN}:S=7:32", Y),
    ("30^\\circ", "\\angle ABC = 30^\\circ", Y), ("(5,2),(7,2)", "p=5,q=2;p=7,q=2", Y),
    ("(7,2),(5,2)", "p=5,q=2;p=7,q=2", Y), ("(2,5),(7,2)", "p=5,q=2;p=7,q=2", N), ("(1,2,3)", "(a,b,c)=(1,2,3)", Y),
    ("x=11", "11", Y), ("x\\approx 11", "11", Y), ("x = 5+6 = 11", "x=11", Y), ("x=\\frac{1}{3}\\approx0.33", "x=1/3", Y),
]
RELATIONS = [
    ("x <= 2", "x \\leq 2", Y), ("x >= 5", "x\\geq5", Y), ("x != 3", "x \\neq 3", Y), ("x \\lt 3", "x<3", Y),
    ("x \\gt 5", "x>5", Y), ("5 \\geq x", "x \\leq 5", Y), ("-x >= -1", "x <= 1", Y), ("-x > -1", "x < 1", Y),
    ("x-1\\leq0", "x\\leq1", Y), ("2x<6", "x<3", Y), ("-2x<6", "x<-3", N), ("-2x<6", "x>-3", Y), ("x≤3", "x\\le 3", Y),
    ("x > 3", "(3, \\infty)", Y), ("x \\geq 3", "[3, \\infty)", Y), ("x \\geq 3", "(3, \\infty)", N),
    ("(-\\infty, 2)", "x<2", Y), ("y<2", "x<2", N),
]
INTERVAL_FORMS = [
    ("(0,1)", "0<f(x)<1", Y), ("0<f(x)<1", "(0,1)", Y), ("x \\in [-2,7]", "-2 \\le x \\le 7", Y),
    ("-2 \\le x \\le 7", "x \\in [-2,7]", Y), ("[-2, 7)", "-2\\leq x<7", Y), ("7 > x \\geq -2", "[-2,7)", Y),
    ("\\{x \\mid -2 \\le x \\le 7\\}", "[-2,7]", Y), ("\\{x : x > 0\\}", "(0,\\infty)", Y),
    ("\\{x \\mid x > 0\\}", "x>0", Y), ("\\{x \\mid x \\geq 0\\}", "(0,\\infty)", N),
]
PERCENT_WORDS = [
    ("28 percent", "28\\%", Y), ("28 pct", "28\\%", Y), ("28 percentage", "28\\%", Y), ("28\\text{ percent}", "28\\%", Y),
    ("$28$ percent", "28\\%", Y), ("28 %", "28\\%", Y), ("0.28", "28 percent", Y), ("29 percent", "28\\%", N),
]
MATRICES = [
    ("\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", Y),
    ("\\begin{bmatrix}0&0\\\\0&0\\end{bmatrix}", "\\begin{pmatrix}0&0\\\\0&0\\end{pmatrix}", Y),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}+\\begin{pmatrix}5&6\\\\7&8\\end{pmatrix}",
     "\\begin{pmatrix}6&8\\\\10&12\\end{pmatrix}", Y),
    ("\\begin{pmatrix}1&1\\\\0&1\\end{pmatrix}\\begin{pmatrix}1&1\\\\0&1\\end{pmatrix}",
     "\\begin{pmatrix}1&2\\\\0&1\\end{pmatrix}", Y),
    ("\\begin{pmatrix}1&1\\\\0&1\\end{pmatrix}^2", "\\begin{pmatrix}1&2\\\\0&1\\end{pmatrix}", Y),
    ("2\\begin{pmatrix}1\\\\-3\\end{pmatrix}", "\\begin{pmatrix}2\\\\-6\\end{pmatrix}", Y),
    ("\\begin{pmatrix}6&8\\\\10&12\\end{pmatrix}",
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}+\\begin{pmatrix}5&6\\\\7&8\\end{pmatrix}", Y),
    ("\\begin{pmatrix}\\frac12&0.75\\\\\\end{pmatrix}", "\\begin{bmatrix}0.5&\\frac34\\end{bmatrix}", Y),
    ("\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", N),
]
SOLUTION_SETS = [
    ("1,1,2", "1,2", Y), ("\\{2,2,1\\}", "\\{1,2\\}", Y), ("x=1\\quad\\text{and}\\quad x=2", "1,2", Y),
    ("x=2 \\quad \\text{or} \\quad x=1", "\\{1,2\\}", Y), ("(3,17),(17,3),(3,17)", "(17,3),(3,17)", Y),
    ("-12;-11;-10", "\\{-10,-11,-12\\}", Y), ("(0;-2;6),(4;0;0)", "(4,0,0),(0,-2,6)", Y),
    ("(11,7)or(7,11)", "(7,11),(11,7)", Y), ("{1,3}", "(1,3)", Y), ("{1,3}", "(3,1)", N),
    ("(1,2)", "(2,1)", N), ("(1,2)", "\\{1,2\\}", N), ("1,2", "(2,1)", N),
]
REPEATING_AND_ANGLES = [
    ("0.\\overline{3}", "\\frac13", Y), ("0.1\\overline{6}", "\\frac16", Y), ("0.\\overline{142857}", "\\frac{1}{7}", Y),
    ("1.\\overline{09}", "\\frac{12}{11}", Y), ("0.(3)", "\\frac{1}{3}", Y), ("0.\\dot{3}", "\\frac13", Y),
    ("\\frac{\\pi}{6}", "30^\\circ", Y), ("\\frac{\\pi}{6}", "30", N), ("\\frac{\\pi}{4}", "30^\\circ", N),
    ("45", "45^\\circ", Y), ("45^\\circ", "45", Y), ("\\frac{\\pi}{2}", "\\frac{\\pi}{2}", Y),
]
DOUBLE_ESCAPED = [
    ("\\\\frac12", "0.5", Y), ("\\\\sqrt{2}", "\\sqrt2", Y), ("\\\\frac{1}{3}", "\\frac{1}{2}", N),
    ("\\\\begin{pmatrix}1\\\\\\\\2\\\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", Y),
]
CATEGORIES = {"false_pass": FALSE_PASS_PROBES, "labelled": LABELLED_GOLDS, "relations": RELATIONS,
              "intervals": INTERVAL_FORMS, "percent": PERCENT_WORDS, "matrices": MATRICES, "sets": SOLUTION_SETS,
              "repeating_angles": REPEATING_AND_ANGLES, "double_escaped": DOUBLE_ESCAPED}
ALL_CASES = [(name, *case) for name, cases in CATEGORIES.items() for case in cases]


@pytest.mark.parametrize("category,pred,gold,expected", ALL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ALL_CASES)])
def test_answer_forms(category, pred, gold, expected):
    assert answers_equal(pred, gold) is expected, f"{category}: {pred!r} vs {gold!r}"


RESPONSES = [  # (response, gold, status)
    ("\\\\boxed{\\\\frac12}", "0.5", "correct"),  # double-escaped response
    ("so \\\\boxed{\\\\begin{pmatrix}1\\\\\\\\2\\\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "correct"),
    # several boxes: one group of parts joined by and/commas is one multi-part answer ...
    ("The integers are \\boxed{-2} and \\boxed{1}.", "1, -2", "correct"),
    ("$\\boxed{1}\\boxed{2}$", "\\{1,2\\}", "correct"),
    ("so $x=\\boxed{3}$, $y=\\boxed{4}$", "x=3, y=4", "correct"),
    ("\\boxed{5} \\quad \\boxed{5}", "5", "correct"),  # the same box twice is one answer
    # ... but several different guesses are a list, which a single gold never equals
    ("It is \\boxed{3} or \\boxed{5}.", "5", "wrong"),
    ("Either \\boxed{3}, \\boxed{4} or \\boxed{5}", "4", "wrong"),
    ("\\boxed{3} or maybe \\boxed{5}", "5", "wrong"),
    # an earlier box in another sentence was an intermediate result: the last group is the answer
    ("First \\boxed{200}. Then the total is \\boxed{255}.", "255", "correct"),
    ("First \\boxed{200}. Then the total is \\boxed{255}.", "200", "wrong"),
    # no box: the reference's final-answer fallbacks
    ("We add them. The answer is 42.", "42", "correct"),
    ("Final Answer: The final answer is $28 \\%$. I hope it is correct.", "28\\%", "correct"),
    ("Final Answer: The largest $n$ is 34.", "34", "correct"),
    ("Some work...\n**Final Answer**\n$\\frac{3}{4}$", "0.75", "correct"),
    ("<think>long thought 7 9 11</think><conclude>The answer is $9$.</conclude>", "9", "correct"),
    ("<conclude>We compute 3 + 4 = 7, then double it.</conclude>", "7", "no_answer"),
    ("Thus $x <= 2$ is our answer.", "x \\leq 2", "correct"),
    ("The solution is $x != 5$", "x\\neq5", "correct"),
    ("Answer: \\( (9+1) \\)", "10", "correct"),
    ("28 percent", "28\\%", "correct"),
    ("$x \\in [-2,7]$", "-2 \\le x \\le 7", "correct"),
    ("The sum is $\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$",
     "\\begin{pmatrix}6&8\\\\10&12\\end{pmatrix}", "correct"),
    # a statement after the last box wins; a box after the statement wins
    ("\\boxed{200} so far. Final Answer: The final answer is $10,455$.", "10455", "correct"),
    ("The answer is 3. Checking again, we get \\boxed{4}.", "4", "correct"),
    # never a number from the middle of the text
    ("We have 5 apples and then buy 3 more, so there are eight.", "3", "no_answer"),
    ("There are 12 distinct sequences that meet the conditions, as we showed above in detail.", "12", "no_answer"),
    ("I think it is 4", "4", "no_answer"),
    ("no box", "4", "no_answer"),  # two words without a number or math are prose, not an answer
    ("Evelyn", "\\text{Evelyn}", "correct"),
    ("The answer is not clear.", "\\text{not clear}", "no_answer"),
    ("the answer is \\boxed{\\frac{1", "1", "no_answer"),  # cut inside a box
]


@pytest.mark.parametrize("response,gold,status", RESPONSES, ids=[str(i) for i in range(len(RESPONSES))])
def test_response_forms(response, gold, status):
    verdict = verify(response, gold)
    assert verdict.status == status, (response, gold, verdict)


def test_gold_given_as_a_solution_without_box():
    gold = ("The stock keeps 90% and then 80% of its value, 72% in all. " * 3) + \
        "Final Answer: The final answer is $28 \\%$. I hope it is correct."
    assert verify("a loss of $\\boxed{28\\%}$", gold).correct
    assert not verify("a loss of $\\boxed{72\\%}$", gold).correct


MATRIX = "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"
ADVERSARIAL_NEW_FORMS = {  # the new shapes and fallbacks stay linear-time on hostile input
    "ratio chain": "\\boxed{" + ":".join(["1"] * 20000) + "}",
    "relation chain": "\\boxed{" + "<".join(["x"] * 20000) + "}",
    "approximation chain": "\\boxed{" + "\\approx".join(["1"] * 5000) + "}",
    "set builder": "\\boxed{\\{x \\mid " + "x<1," * 5000 + "\\}}",
    "percent words": "\\boxed{" + "1 percent " * 5000 + "}",
    "double escaped": "\\\\boxed{" + "\\\\frac{1}{2}" * 5000 + "}",
    "matrix power": "\\boxed{" + MATRIX + "^{4000}}",
    "matrix product": "\\boxed{" + MATRIX * 300 + "}",
    "answer-is spam": "the answer is $" * 20000,
    "unclosed inline math": "\\(" * 50000,
    "stated-before spam": "$x$ is " * 20000 + "the answer",
    "long label": "\\boxed{" + "A" * 5000 + "=5}",
    "long repeating decimal": "\\boxed{0." + "1" * 3000 + "\\overline{" + "9" * 3000 + "}}",
    "huge clock": "\\boxed{" + "1" * 5000 + ":00}",
    "unit spam": "\\boxed{5" + " cm" * 5000 + "}",
    "boxes without end": "\\boxed{1} and \\boxed{" * 20000,
}


@pytest.mark.parametrize("response", ADVERSARIAL_NEW_FORMS.values(), ids=ADVERSARIAL_NEW_FORMS.keys())
def test_new_forms_on_hostile_input_are_quick_and_not_correct(response):
    started = time.perf_counter()
    verdict = verify(response, "1")
    assert time.perf_counter() - started < 2.0
    assert not verdict.correct and verdict.status in ("wrong", "no_answer")
