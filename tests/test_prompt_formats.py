"""Prompt files in the formats users bring (`data.format`), one reader for train, eval and generate."""
import importlib.util
import json

import pytest

from oreal_mega.errors import UserError
from oreal_mega.rollout.formats import check_format
from oreal_mega.rollout.prompts import read_prompts

GSM8K = [{"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
          "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                    "Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"},
         {"question": "Weng earns $12 an hour. How much for 50 minutes?",
          "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nSo she earned 0.2 x 50 = $<<0.2*50=10>>10.\n"
                    "#### 10"},
         {"question": "How much is 1000 + 200?", "answer": "1000 + 200 = 1200\n#### 1,200"}]


def _jsonl(path, items):
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def test_gsm8k_is_detected_and_its_gold_is_the_final_answer(tmp_path, capsys):
    records = read_prompts(_jsonl(tmp_path / "gsm8k.jsonl", GSM8K), announce=True)
    assert [(r.line, r.gold) for r in records] == [(1, "72"), (2, "10"), (3, "1200")]
    assert records[0].question.startswith("Natalia") and "answer" not in records[0].extra
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "3 prompts, data format gsm8k (the first record's 'answer' is a worked " \
                                   "solution with a '#### N' line)" in out


def test_gsm8k_records_without_a_final_line_are_all_named(tmp_path):
    bad = [dict(GSM8K[0], answer="She sold 72 clips.")] * 12
    with pytest.raises(UserError) as err:
        read_prompts(_jsonl(tmp_path / "g.jsonl", GSM8K[:1] + bad), "gsm8k")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'g.jsonl'}: 12 bad lines: line 2: the solution under 'answer' has no "
                              "'#### N' final-answer line; line 3:") and "… 2 more" in message


@pytest.mark.parametrize("gold,hint", [
    (GSM8K[0]["answer"], "it has a '#### N' line: use data.format gsm8k"),
    ("We compute $2+3$ and get \\boxed{5}.", "use data.format math"),
    ("First we add.\n" + "Then we carry on adding the remaining numbers together. " * 3, "several lines"),
])
def test_a_worked_solution_is_never_taken_as_the_gold(tmp_path, gold, hint):
    path = _jsonl(tmp_path / "p.jsonl", [{"question": "1+1?", "gold_answer": "2"}, {"question": "q", "answer": gold}])
    with pytest.raises(UserError, match=f"p.jsonl:2: the gold answer under 'answer' looks like a worked solution "
                                        f"\\(.*{hint[:20]}"):
        read_prompts(path, "oreal")


def test_math_format_keeps_level_and_subject_and_reads_boxed_solutions(tmp_path, capsys):
    items = [{"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "answer": "\\frac{3}{4}", "level": 2,
              "subject": "Prealgebra", "unique_id": "test/prealgebra/1.json"},
             {"problem": "Compute $3 \\cdot 4$.", "solution": "We have $3 \\cdot 4 = \\boxed{12}$.", "level": 1,
              "type": "Algebra"}]
    records = read_prompts(_jsonl(tmp_path / "math.jsonl", items), announce=True)
    assert [(r.question[:7], r.gold) for r in records] == [("What is", "\\frac{3}{4}"), ("Compute", "12")]
    assert records[0].extra == {"level": 2, "subject": "Prealgebra", "unique_id": "test/prealgebra/1.json"}
    assert "data format math" in capsys.readouterr().out
    with pytest.raises(UserError, match="math.jsonl:1: no 'answer', and the 'solution' has no"):
        read_prompts(_jsonl(tmp_path / "math.jsonl", [{"problem": "x?", "solution": "It is 4."}]), "math")


def test_chat_format(tmp_path):
    items = [{"messages": [{"role": "user", "content": "What is 2+2?"}], "answer": "4", "data_source": "toy"},
             {"messages": [{"role": "user", "content": "What is 3+3?"}], "reward_model": {"ground_truth": "6"}}]
    records = read_prompts(_jsonl(tmp_path / "chat.jsonl", items))
    assert [(r.question, r.gold, r.extra) for r in records] == [("What is 2+2?", "4", {"data_source": "toy"}),
                                                               ("What is 3+3?", "6", {})]
    bad = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]},
           {"messages": "1+1?", "answer": "2"}]
    with pytest.raises(UserError, match=r"2 bad lines: line 1: 'messages' has a system message: set "
                                        r"data.system_prompt instead.*; line 2: 'messages' must be a list"):
        read_prompts(_jsonl(tmp_path / "chat.jsonl", bad), "chat")


def test_verl_parquet_written_here(tmp_path, capsys):
    pyarrow = pytest.importorskip("pyarrow", reason="pyarrow not installed: pip install -e \".[parquet]\"")
    import pyarrow.parquet
    instruction = "Let's think step by step and output the final answer after \"####\"."
    rows = [{"data_source": "openai/gsm8k", "ability": "math",
             "prompt": [{"role": "user", "content": f"{item['question']} {instruction}"}],
             "reward_model": {"style": "rule", "ground_truth": item["answer"].split("#### ")[-1].replace(",", "")},
             "extra_info": {"split": "test", "index": index}} for index, item in enumerate(GSM8K)]
    path = tmp_path / "test.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    records = read_prompts(path, announce=True)
    assert [r.gold for r in records] == ["72", "10", "1200"]
    assert records[1].question.startswith("Weng earns") and records[1].question.endswith(instruction)
    assert records[2].extra == {"data_source": "openai/gsm8k", "ability": "math",
                                "extra_info": {"split": "test", "index": 2}}
    assert "3 prompts, data format verl_parquet (a .parquet file)" in capsys.readouterr().out
    broken = [dict(rows[0], reward_model={"style": "rule", "ground_truth": None}),
              dict(rows[1], prompt=[{"role": "assistant", "content": "hi"}])]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows[:1] + broken), path)
    with pytest.raises(UserError, match=r"test.parquet: 2 bad rows: row 2: no gold answer under "
                                        r"'reward_model.ground_truth'; row 3: 'prompt' must hold exactly one user"):
        read_prompts(path, "verl_parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="junk.parquet: not a readable parquet file"):
        read_prompts(tmp_path / "junk.parquet")


def test_format_errors(tmp_path):
    with pytest.raises(UserError, match="data.format in run.yaml: 'csv' is not one of auto, oreal, math, gsm8k"):
        check_format("csv", "data.format in run.yaml")
    path = _jsonl(tmp_path / "p.jsonl", [{"question": "1+1?", "answer": "2"}])
    if importlib.util.find_spec("pyarrow"):
        with pytest.raises(UserError, match="p.jsonl: not a readable parquet file"):
            read_prompts(path, "verl_parquet")
    with pytest.raises(UserError, match="p.jsonl:1: the gsm8k format needs the worked solution"):
        read_prompts(_jsonl(path, [{"question": "1+1?", "answer": 2}]), "gsm8k")
