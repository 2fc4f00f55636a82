"""pass@k, the evaluation summary and its breakdown by group fields, and the per-problem verdicts, on fixed
generations (a scripted engine: no vLLM) against hand counts; the verifier choice reaching the pool."""
import json
import types
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import oreal_mega.verifier
from oreal_mega.errors import UserError
from oreal_mega.evaluation import EvalResult, ProblemResult, evaluate, pass_at_k
from oreal_mega.rollout.base import RolloutEngine, Sample
from oreal_mega.rollout.prompts import PromptRecord
from oreal_mega.testing.tiny import make_tiny_tokenizer
from oreal_mega.trainer.colocated_rollout import ColocatedRollout, verifier_pool
from oreal_mega.trainer.config import ModelConfig, TrainConfig, TrainLoopConfig, VerifierConfig
from oreal_mega.verifier import VerifierPool, verify

MATH_SAMPLE = Path(__file__).parent / "data" / "math_sample.jsonl"  # original problems in the MATH format


def brute_force_pass_at_k(flags: list[bool], k: int) -> Fraction:
    """The fraction of all k-subsets of the samples that hold a correct one."""
    subsets = list(combinations(flags, k))
    return Fraction(sum(any(subset) for subset in subsets), len(subsets))


def test_pass_at_k_equals_enumeration_of_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            flags = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(flags, k)),
                                                           abs=1e-15), (n, c, k)


def test_pass_at_k_edge_cases_and_large_n():
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1000, 1, 1) == pytest.approx(1e-3)  # no cancellation
    for bad in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def make_sample(index: int, text: str, finish: str = "stop", tokens: int = 3) -> Sample:
    return Sample(index, list(range(tokens)), text, torch.zeros(tokens), finish)


# Fixed generations for three problems (gold 7, 12, 5): greedy text, then 4 sampled texts.
GENERATIONS = [
    ("7", "3+4=7.\n\\boxed{7}", ["\\boxed{7}", "\\boxed{8}", "no box", "\\boxed{7.0}"]),
    ("12", "\\boxed{13}", ["\\boxed{13}", "\\boxed{11}", "\\boxed{1", "\\boxed{10}"]),
    ("5", "\\boxed{5}", ["\\boxed{5}", "\\boxed{5}", "\\boxed{5}", "\\boxed{6}"]),
]


@pytest.fixture
def fixed_result() -> EvalResult:
    problems = []
    for index, (gold, greedy_text, sample_texts) in enumerate(GENERATIONS):
        record = PromptRecord(index + 1, f"question {index}", gold, None, {"level": index % 2 + 1})
        greedy = make_sample(index, greedy_text, tokens=4 + index)
        # the third sample of problem 1 ran out of tokens
        samples = [make_sample(index, text, "length" if (index, j) == (1, 2) else "stop", 2 + j)
                   for j, text in enumerate(sample_texts)]
        verdicts = [verify(s.text, gold, finished=s.finish_reason == "stop") for s in samples]
        problems.append(ProblemResult(index, record, greedy, verify(greedy_text, gold), samples, verdicts))
    return EvalResult(problems, k=2, n=4, temperature=1.0, max_tokens=16, seconds=1.0)


def test_summary_equals_hand_count(fixed_result):
    summary = fixed_result.summary()
    # greedy: right, wrong, right
    assert summary["greedy_pass_at_1"] == pytest.approx(2 / 3)
    # correct samples per problem: 2 of 4, 0 of 4, 3 of 4
    assert summary["sampled_pass_at_1"] == pytest.approx(5 / 12)
    # pass@2 by hand: 1 - C(2,2)/C(4,2) = 5/6; 0; 1 - C(1,2)/C(4,2) = 1
    assert summary["pass_at_2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert summary["greedy_status_counts"] == {"correct": 2, "wrong": 1}
    assert summary["sample_status_counts"] == {"correct": 5, "no_answer": 1, "truncated": 1,
                                               "wrong": 5}
    assert summary["greedy_mean_tokens"] == pytest.approx(5.0)  # 4, 5, 6
    assert summary["sample_mean_tokens"] == pytest.approx(3.5)  # 2, 3, 4, 5 per problem
    assert summary["sample_truncation_rate"] == pytest.approx(1 / 12)
    assert summary["greedy_truncation_rate"] == 0.0
    assert summary["by_level"] == {
        "1": {"problems": 2, "greedy_pass_at_1": 1.0, "sampled_pass_at_1": 5 / 8, "pass_at_2": pytest.approx(11 / 12)},
        "2": {"problems": 1, "greedy_pass_at_1": 0.0, "sampled_pass_at_1": 0.0, "pass_at_2": 0.0}}
    assert "by_subject" not in summary and "by_data_source" not in summary  # no problem has those fields


def test_written_files_match_the_summary(fixed_result, tmp_path):
    paths = fixed_result.write(tmp_path / "eval")
    rows = [json.loads(line) for line in paths["problems"].read_text().splitlines()]
    assert [row["samples_correct"] for row in rows] == [[True, False, False, True],
                                                        [False, False, False, False],
                                                        [True, True, True, False]]
    assert [row["greedy_status"] for row in rows] == ["correct", "wrong", "correct"]
    assert rows[0]["gold"] == "7" and rows[0]["level"] == 1 and rows[0]["greedy_pred"] == "7"
    assert [row["index"] for row in rows] == [0, 1, 2] and rows[1]["samples_pred"] == ["13", "11", None, "10"]
    assert sum(row["pass_at_2"] for row in rows) / 3 == pytest.approx(
        json.loads(paths["summary"].read_text())["pass_at_2"])
    table = paths["table"].read_text()
    assert "pass@2" in table and "0.6667" in table and "truncated" in table


def test_greedy_only_result_has_no_sample_metrics(fixed_result):
    greedy_only = EvalResult([ProblemResult(p.index, p.record, p.greedy, p.greedy_verdict)
                              for p in fixed_result.problems], 0, 0, 1.0, 16, 1.0)
    summary = greedy_only.summary()
    assert "pass_at_0" not in summary and "sampled_pass_at_1" not in summary
    assert greedy_only.pass_at_k is None and "samples" not in greedy_only.table()


def test_evaluate_rejects_bad_arguments_before_generating():
    with pytest.raises(ValueError, match="gold answer for every problem"):
        evaluate("unused", [{"question": "1+1?"}])
    with pytest.raises(ValueError, match="0 <= k <= n"):
        evaluate("unused", [{"question": "1+1?", "answer": 2}], k=4, n=2)


class ScriptedEngine(RolloutEngine):
    """Fixed responses per prompt: `greedy[i]` at temperature 0, `samples[i]` (n of them) otherwise; the same on
    every rank, as a real engine's collective generate gives."""

    def __init__(self, greedy: list[str], samples: list[list[str]] | None = None):
        self.greedy, self.samples = greedy, samples

    def generate(self, prompts, sampling, progress=False, *, step=None):
        assert len(prompts) == len(self.greedy)
        if sampling.temperature == 0:
            return [[make_sample(i, text)] for i, text in enumerate(self.greedy)]
        assert all(len(texts) == sampling.n for texts in self.samples)
        return [[make_sample(i, text) for text in texts] for i, texts in enumerate(self.samples)]

    def prompt_logprobs(self, token_ids_list):
        raise NotImplementedError

    def update_weights(self, named_tensors):
        raise NotImplementedError

    def sleep(self):
        pass

    def wake(self, tags=()):
        pass

    def shutdown(self):
        pass


class CountingPool(VerifierPool):
    """A real pool that counts, per process, the pools made and the responses judged."""
    made, judged = 0, []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        CountingPool.made += 1

    def verify_batch(self, responses, *args, **kwargs):
        CountingPool.judged.append(len(responses))
        return super().verify_batch(responses, *args, **kwargs)


def _evaluate_on_two_ranks(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/gloo_init", rank=rank, world_size=2)
    try:
        from transformers import AutoTokenizer

        oreal_mega.verifier.VerifierPool = CountingPool  # evaluate's default pool
        tokenizer = AutoTokenizer.from_pretrained(f"{tmp}/tokenizer")
        problems = [{"question": f"question {i}", "answer": gold} for i, (gold, _, _) in enumerate(GENERATIONS)]
        # as ColocatedRollout.maybe_evaluate: the trainer's pool on rank 0, None elsewhere; then the default
        trainer_pool = CountingPool(1) if rank == 0 else None
        try:
            engine = ScriptedEngine([greedy for _, greedy, _ in GENERATIONS])
            results = [evaluate(engine, problems, tokenizer=tokenizer, k=0, verifier=verifier)
                       for verifier in (trainer_pool, None)]
        finally:
            if trainer_pool is not None:
                trainer_pool.close()
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps({
            "made": CountingPool.made, "judged": CountingPool.judged,
            "pass_at_1": [r.greedy_pass_at_1 for r in results],
            "statuses": [[p.greedy_verdict.status for p in r.problems] for r in results]}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_torch_distributed_only_rank_0_verifies(tmp_path):
    """Two gloo ranks evaluate the same generations: one pool and one verification pass in all (rank 0's),
    and every rank gets the same verdicts and pass@1."""
    make_tiny_tokenizer(tmp_path / "tokenizer")
    mp.spawn(_evaluate_on_two_ranks, args=(str(tmp_path),), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["made"] == 2 and rank0["judged"] == [3, 3]  # the trainer's pool, then evaluate's own
    assert rank1["made"] == 0 and rank1["judged"] == []
    assert rank0["pass_at_1"] == rank1["pass_at_1"] == [pytest.approx(2 / 3)] * 2  # greedy: right, wrong, right
    assert rank0["statuses"] == rank1["statuses"] == [["correct", "wrong", "correct"]] * 2


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


# Scripted responses to tests/data/math_sample.jsonl (golds from the solutions' boxes: 7, (2,5), 1, 30, 120/17,
# 1/9, 3√2, 11/3), each with the status the verifier must give it: the greedy one, then 4 samples.
MATH_RESPONSES = [
    (("so $x = \\boxed{7}$.", "correct"),
     [("\\boxed{7}", "correct"), ("\\boxed{7.0}", "correct"), ("\\boxed{-7}", "wrong"), ("no idea", "no_answer")]),
    (("\\boxed{[2,5]}", "wrong"),
     [("\\boxed{(2,5)}", "correct"), ("\\boxed{[2,5]}", "wrong"), ("\\boxed{(2, 5)}", "correct"),
      ("\\boxed{(5,2)}", "wrong")]),
    (("The remainder is \\boxed{1}.", "correct"), [("\\boxed{1}", "correct")] * 4),
    (("\\boxed{24}", "wrong"), [("\\boxed{24}", "wrong")] * 4),
    (("\\boxed{\\dfrac{120}{17}}", "correct"),
     [("\\boxed{120/17}", "correct"), ("\\boxed{7}", "wrong"), ("\\boxed{17}", "wrong"), ("\\boxed{8}", "wrong")]),
    (("\\boxed{\\frac{4}{36}}", "correct"),
     [("\\boxed{\\frac19}", "correct"), ("\\boxed{\\frac{1}{6}}", "wrong"), ("\\boxed{0.1}", "wrong"),
      ("\\boxed{\\frac{4}{36}}", "correct")]),
    (("\\boxed{\\sqrt{18}}", "correct"),
     [("\\boxed{3\\sqrt{2}}", "correct"), ("\\boxed{\\sqrt{18}}", "correct"), ("\\boxed{3\\sqrt{3}}", "wrong"),
      ("\\boxed{9}", "wrong")]),
    (("\\boxed{-\\frac{11}{3}}", "wrong"),
     [("\\boxed{\\frac{11}{3}}", "correct"), ("\\boxed{-\\frac{11}{3}}", "wrong"),
      ("\\boxed{\\frac{11}{3}}", "correct"), ("\\boxed{3\\frac{2}{3}}", "correct")]),
]


def test_math_sample_breaks_pass_rates_down_by_level_and_subject(tokenizer, tmp_path):
    engine = ScriptedEngine([greedy for (greedy, _), _ in MATH_RESPONSES],
                            [[text for text, _ in samples] for _, samples in MATH_RESPONSES])
    result = evaluate(engine, MATH_SAMPLE, tokenizer=tokenizer, k=2, n=4)
    assert [[p.greedy_verdict.status] + [v.status for v in p.sample_verdicts] for p in result.problems] == [
        [status] + [s for _, s in samples] for (_, status), samples in MATH_RESPONSES]
    summary = result.summary()
    assert summary["verifier"] == "oreal, fallback none" and "by_data_source" not in summary
    # by hand: correct samples per problem 2, 2, 4, 0, 1, 2, 2, 3 of 4, so pass@2 = 1 - C(4-c, 2)/C(4, 2) is
    # 5/6, 5/6, 1, 0, 1/2, 5/6, 5/6, 1; greedy right on problems 0, 2, 4, 5, 6
    assert summary["by_level"] == {
        "Level 1": {"problems": 3, "greedy_pass_at_1": 1.0, "sampled_pass_at_1": 8 / 12,
                    "pass_at_2": pytest.approx(8 / 9)},  # problems 0, 2, 6
        "Level 2": {"problems": 3, "greedy_pass_at_1": 2 / 3, "sampled_pass_at_1": 6 / 12,
                    "pass_at_2": pytest.approx(7 / 9)},  # problems 4, 5, 7
        "Level 3": {"problems": 2, "greedy_pass_at_1": 0.0, "sampled_pass_at_1": 2 / 8,
                    "pass_at_2": pytest.approx(5 / 12)}}  # problems 1, 3
    assert summary["by_subject"] == {
        "Algebra": {"problems": 3, "greedy_pass_at_1": 2 / 3, "sampled_pass_at_1": 6 / 12,
                    "pass_at_2": pytest.approx(5 / 6)},
        "Counting & Probability": {"problems": 1, "greedy_pass_at_1": 1.0, "sampled_pass_at_1": 2 / 4,
                                   "pass_at_2": pytest.approx(5 / 6)},
        "Geometry": {"problems": 1, "greedy_pass_at_1": 1.0, "sampled_pass_at_1": 1 / 4, "pass_at_2": 0.5},
        "Intermediate Algebra": {"problems": 1, "greedy_pass_at_1": 0.0, "sampled_pass_at_1": 3 / 4,
                                 "pass_at_2": 1.0},
        "Number Theory": {"problems": 2, "greedy_pass_at_1": 0.5, "sampled_pass_at_1": 4 / 8, "pass_at_2": 0.5}}
    table = result.table().splitlines()
    assert {f"by {name} (problems): greedy pass@1, pass@2" for name in ("level", "subject")} <= set(table)
    assert any(line.split() == ["Counting", "&", "Probability", "(1)", "1.0000", "0.8333"] for line in table)

    paths = result.write(tmp_path / "eval")
    rows = [json.loads(line) for line in paths["problems"].read_text().splitlines()]
    assert [(row["index"], row["line"]) for row in rows] == [(i, i + 1) for i in range(8)]
    assert [row["gold"] for row in rows] == ["7", "(2,5)", "1", "30", "\\frac{120}{17}", "\\frac{1}{9}", "3\\sqrt{2}",
                                             "\\frac{11}{3}"]
    assert (rows[7]["level"], rows[7]["subject"], rows[7]["unique_id"]) == (
        "Level 2", "Intermediate Algebra", "oreal-sample/intermediate_algebra/7.json")
    assert rows[7]["greedy_pred"] == "-\\frac{11}{3}" and rows[7]["greedy_status"] == "wrong"
    assert rows[7]["samples_pred"] == ["\\frac{11}{3}", "-\\frac{11}{3}", "\\frac{11}{3}", "3\\frac{2}{3}"]
    assert rows[7]["samples_status"] == ["correct", "wrong", "correct", "correct"]
    assert rows[0]["samples_pred"][3] is None and rows[0]["samples_status"][3] == "no_answer"


def test_group_by_names_the_fields_and_skips_problems_without_one(tokenizer):
    problems = [{"question": "q0", "answer": "1", "source": "a"}, {"question": "q1", "answer": "2", "source": "b"},
                {"question": "q2", "answer": "3"}]
    result = evaluate(ScriptedEngine(["\\boxed{1}", "\\boxed{5}", "\\boxed{3}"]), problems, tokenizer=tokenizer,
                      k=0, group_by=("source", "level"))
    summary = result.summary()
    assert summary["by_source"] == {"a": {"problems": 1, "greedy_pass_at_1": 1.0},
                                    "b": {"problems": 1, "greedy_pass_at_1": 0.0}}
    assert "by_level" not in summary and summary["greedy_pass_at_1"] == pytest.approx(2 / 3)


def test_the_backend_and_fallback_choose_evaluates_own_pool(tokenizer):
    problems = [{"question": "How many apples?", "answer": "7"}]
    engine = ScriptedEngine(["So there are 7 apples."])
    expected = {"none": ("no_answer", "oreal, fallback none"),
                "last_number": ("correct", "oreal, fallback last_number")}
    for fallback, (status, described) in expected.items():
        result = evaluate(engine, problems, tokenizer=tokenizer, k=0, fallback=fallback)
        assert result.problems[0].greedy_verdict.status == status and result.summary()["verifier"] == described
    with pytest.raises(UserError, match="verifier.fallback in config: 'first_number' is not one of"):
        evaluate("unused", problems, fallback="first_number")
    with pytest.raises(ValueError, match="a given verifier judges as it was built"):
        evaluate(engine, problems, tokenizer=tokenizer, k=0, verifier=object(), fallback="last_number")


def test_the_trainers_held_out_evaluation_judges_with_the_training_pool(tokenizer, tmp_path):
    """ColocatedRollout.maybe_evaluate hands evaluate the pool that judges the rollouts, built from the verifier
    config (here fallback last_number, which the default pool would not use)."""
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps({"question": "How many apples?", "gold_answer": "7"}) + "\n")
    cfg = TrainConfig(model=ModelConfig(path="unused"), verifier=VerifierConfig(workers=1, fallback="last_number"),
                      train=TrainLoopConfig(eval_every=2, eval_data=str(data)))
    with verifier_pool(cfg.verifier) as pool:
        rollout = types.SimpleNamespace(cfg=cfg, live=True, engine=ScriptedEngine(["So there are 7 apples."]),
                                        tokenizer=tokenizer, pool=pool)
        assert ColocatedRollout.maybe_evaluate(rollout, step=0) == {}  # not an evaluation step
        assert ColocatedRollout.maybe_evaluate(rollout, step=1) == {"eval_greedy_pass@1": 1.0}
        assert pool.counters()["verdicts"] == 1
