"""`oreal-mega bench verifier`: the cold-cache measurement really starts every item with empty caches."""
from types import SimpleNamespace

from oreal_mega.verifier import answers_equal, math_verify_backend, verify
from oreal_mega.bench.verifier import make_batch, run, verify_with_cold_caches
from oreal_mega.verifier.caching import clear_caches
from oreal_mega.verifier.equivalence import answers_equal as cached_answers_equal


def test_clear_caches_empties_them():
    answers_equal("\\frac{1}{2}", "0.5")
    assert cached_answers_equal.cache_info().currsize > 0
    clear_caches()
    assert cached_answers_equal.cache_info().currsize == 0


def test_cold_verify_agrees_and_keeps_only_the_last_item():
    responses, golds, finished, _ = make_batch(40, seed=5)
    for response, gold, done in zip(responses, golds, finished):
        assert verify_with_cold_caches(response, gold, finished=done) == verify(response, gold, finished=done)
    verify_with_cold_caches("\\boxed{3}", "3")
    assert cached_answers_equal.cache_info().currsize <= 1


def test_bench_reports_warm_and_cold_rates(capsys):
    assert run(SimpleNamespace(size=64, workers=1, timeout=10.0, seed=0)) == 0
    out = capsys.readouterr().out
    for label in ("in-process verify, 1 core, 16 rollout(s)/prompt (warm caches)",
                  "in-process verify, 1 core, 16 rollout(s)/prompt (caches cleared per item)",
                  "VerifierPool(1 workers, warm caches), 16 rollout(s)/prompt",
                  "VerifierPool(1 workers, caches cleared per item), 1 rollout(s)/prompt"):
        assert label in out
    assert "agrees with generator labels on 64/64" in out


def test_bench_labelled_prints_recall_false_pass_and_agreement(capsys):
    assert run(SimpleNamespace(size=6, workers=1, timeout=20.0, seed=0, labelled=True)) == 0
    out = capsys.readouterr().out
    assert "| GSM8K reference (#### N) | 6 / 6 | 100.0% / 0.0% | 100.0% / 0.0% |" in out
    assert "| no answer committed (gold = last number) | 0 / 6 | – / 0.0% | – / 100.0% |" in out
    if math_verify_backend.available():
        assert "| style | items | same reward | oreal only correct | math-verify only correct |" in out
