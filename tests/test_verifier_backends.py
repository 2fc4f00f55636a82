"""`verifier.backend: oreal | math-verify` and `verifier.fallback`: selection, errors, the same pool and verdicts."""
import functools
import json

import pytest

from oreal_mega.cli import main
from oreal_mega.errors import UserError
from oreal_mega.verifier import VerifierPool, math_verify_backend, verify
from oreal_mega.verifier.backends import check_choice, verify_function

needs_math_verify = pytest.mark.skipif(not math_verify_backend.available(),
                                       reason=f"math-verify not installed: {math_verify_backend.INSTALL_HINT}")


def test_oreal_backend_functions():
    assert verify_function("oreal", "none") is verify
    with_fallback = verify_function("oreal", "last_number")
    assert isinstance(with_fallback, functools.partial) and with_fallback.keywords == {"fallback": "last_number"}
    assert with_fallback("So there are 7 of them.", "7").correct
    assert not verify_function()("So there are 7 of them.", "7").correct


@pytest.mark.parametrize("backend,fallback,message", [
    ("sympy", "none", "verifier.backend in run.yaml: 'sympy' is not one of oreal, math-verify"),
    ("oreal", "first_number", "verifier.fallback in run.yaml: 'first_number' is not one of none, last_number"),
    ("math-verify", "last_number", "applies to the oreal backend only"),
])
def test_bad_choices_are_one_line_errors(backend, fallback, message):
    with pytest.raises(UserError, match=message):
        check_choice(backend, fallback, "run.yaml")


def test_missing_math_verify_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(math_verify_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"verifier.backend in run.yaml: the math-verify backend needs the "
                                        r"math-verify package: pip install"):
        check_choice("math-verify", "none", "run.yaml")


@needs_math_verify
def test_math_verify_verdicts_have_our_statuses():
    judge = math_verify_backend.verify_math_verify
    assert judge("so the answer is $\\boxed{\\frac{1}{2}}$", "0.5").status == "correct"
    assert judge("so the answer is $\\boxed{3}$", "4").status == "wrong"
    assert judge("so the answer is $\\boxed{4}$", "4", finished=False).status == "truncated"
    assert judge("I do not know.", "4").status == "no_answer"
    assert judge("Natalia sold 72 clips.", "72").correct  # math-verify reads the last expression
    verdict = judge("\\boxed{4}", "\\begin{")
    assert verdict.status in ("error", "wrong") and not verdict.correct


@needs_math_verify
def test_math_verify_runs_in_the_same_pool_with_the_same_timeout():
    responses = ["$\\boxed{\\frac{1}{2}}$", "$\\boxed{3}$", "Answer: $\\boxed{4}$", "no idea"]
    golds = ["0.5", "4", "4", "4"]
    with VerifierPool(1, 20.0, verify_fn=verify_function("math-verify", "none")) as pool:
        verdicts = pool.verify_batch(responses, golds, [True, True, False, True])
    assert [v.status for v in verdicts] == ["correct", "wrong", "truncated", "no_answer"]
    assert verdicts == [math_verify_backend.verify_math_verify(r, g, finished=f)
                        for r, g, f in zip(responses, golds, [True, True, False, True])]


@needs_math_verify
def test_verify_cli_backend_and_fallback(tmp_path, capsys):
    source = tmp_path / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(item) for item in [
        {"response": "So there are 7 apples.", "gold": "7"}, {"response": "\\boxed{7}", "gold": "7"}]) + "\n")
    expected = {("oreal", "none"): ["no_answer", "correct"], ("oreal", "last_number"): ["correct", "correct"],
                ("math-verify", "none"): ["correct", "correct"]}
    for (backend, fallback), statuses in expected.items():
        out = tmp_path / f"{backend}-{fallback}.jsonl"
        with pytest.raises(SystemExit) as exit_info:
            main(["verify", str(source), "--out", str(out), "--workers", "1", "--backend", backend,
                  "--fallback", fallback])
        assert exit_info.value.code == 0
        assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == statuses
    capsys.readouterr()
