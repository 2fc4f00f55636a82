"""Prompt files in the formats users bring (`data.format`), mapped to our prompt fields.

- `oreal` (JSONL): question under `question` / `prompt` / `problem`, gold under `gold_answer` / `answer`, optional
  `pass_rate`; every other key is kept in `extra`.
- `math` (JSONL, MATH and MATH-500): `problem`; gold `answer`, else the `\\boxed{}` of `solution`; `level`,
  `subject`, ... kept.
- `gsm8k` (JSONL): `question`; gold = the text after `####` in `answer` (a worked solution), commas dropped.
- `chat` (JSONL): the one user message of `messages` (or `prompt`), `[{"role", "content"}]`; gold under
  `gold_answer` / `answer` / `reward_model.ground_truth`. A system message is an error (use data.system_prompt).
- `verl_parquet` (parquet, read with pyarrow): the one user message of `prompt`; gold `reward_model.ground_truth`;
  `data_source`, `ability`, `extra_info`, ... kept.

`auto` picks the format from the file: `.parquet` is verl's; in JSONL the first record decides (a message list: chat;
an `answer` with a `####` line: gsm8k; `problem` with `answer` or `solution`: math; otherwise oreal). A gold answer
that is really a worked solution (a `####` line, a `\\boxed{}`, several lines over 100 characters) is an error in
the oreal, math and chat formats, never taken silently. Records are numbered by line (JSONL) or row (parquet, from 1).
"""
import re
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.jsonl import read_objects

FORMATS = ("auto", "oreal", "math", "gsm8k", "verl_parquet", "chat")
QUESTION_KEYS = ("question", "prompt", "problem")
GOLD_KEYS = ("gold_answer", "answer")
_HASH_LINE = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.MULTILINE)
MAX_SHORT_GOLD_CHARS = 100  # a gold over this length on several lines is a worked solution


class RecordError(ValueError):
    """What is wrong with one record (the caller adds the file and line or row)."""


def check_format(data_format: str, key: str = "data.format") -> None:
    if data_format not in FORMATS:
        raise UserError(f"{key}: {data_format!r} is not one of {', '.join(FORMATS)}")


def _solution_hint(gold: str) -> str | None:
    """Why `gold` reads as a worked solution rather than an answer, or None."""
    if _HASH_LINE.search(gold):
        return "it has a '#### N' line: use data.format gsm8k"
    if "\\boxed" in gold or "\\fbox" in gold:
        return "it has a \\boxed{} answer inside: use data.format math, which reads the gold from the solution"
    if "\n" in gold.strip() and len(gold) > MAX_SHORT_GOLD_CHARS:
        return f"it has several lines and {len(gold)} characters"
    return None


def _answer_gold(item: dict, key: str):
    gold = item.get(key)
    if isinstance(gold, str) and (hint := _solution_hint(gold)):
        raise RecordError(f"the gold answer under {key!r} looks like a worked solution ({hint})")
    return gold


def _oreal(item: dict) -> dict:
    gold_key = next((key for key in GOLD_KEYS if key in item), None)
    if gold_key is not None:
        _answer_gold(item, gold_key)
    return item


def _math(item: dict) -> dict:
    if not isinstance(item.get("problem"), str):
        raise RecordError("the math format needs a string under 'problem'")
    fields = {key: value for key, value in item.items() if key not in ("problem", "answer", "solution")}
    if "answer" in item:
        gold = _answer_gold(item, "answer")
    elif isinstance(item.get("solution"), str):
        from oreal_mega.verifier.extract import extract_answer
        gold = extract_answer(item["solution"])
        if gold is None:
            raise RecordError("no 'answer', and the 'solution' has no \\boxed{} answer")
    else:
        gold = None
    return {"question": item["problem"], **({} if gold is None else {"gold_answer": gold}), **fields}


def _gsm8k(item: dict) -> dict:
    solution = item.get("answer")
    if not isinstance(solution, str):
        raise RecordError("the gsm8k format needs the worked solution (a string ending in '#### N') under 'answer'")
    finals = _HASH_LINE.findall(solution)
    if not finals or not finals[-1]:
        raise RecordError("the solution under 'answer' has no '#### N' final-answer line")
    fields = {key: value for key, value in item.items() if key not in ("question", "answer")}
    return {"question": item.get("question"), "gold_answer": finals[-1].replace(",", ""), **fields}


def _user_message(messages, key: str) -> str:
    """The content of the one user message of a chat prompt."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RecordError(f"{key!r} must be a list of {{\"role\", \"content\"}} messages")
    roles = [m.get("role") for m in messages]
    if "system" in roles:
        raise RecordError(f"{key!r} has a system message: set data.system_prompt instead (one for all prompts)")
    if roles != ["user"]:
        raise RecordError(f"{key!r} must hold exactly one user message, got roles {roles}")
    return messages[0].get("content")


def _ground_truth(item: dict):
    reward_model = item.get("reward_model")
    if isinstance(reward_model, dict) and "ground_truth" in reward_model:
        return reward_model["ground_truth"]
    return None


def _chat(item: dict) -> dict:
    key = "messages" if "messages" in item else "prompt"
    question = _user_message(item.get(key), key)
    gold_key = next((k for k in GOLD_KEYS if k in item), None)
    gold = _answer_gold(item, gold_key) if gold_key else _ground_truth(item)
    fields = {k: v for k, v in item.items() if k not in (key, gold_key, "reward_model")}
    return {"question": question, **({} if gold is None else {"gold_answer": gold}), **fields}


def _verl(item: dict) -> dict:
    question = _user_message(item.get("prompt"), "prompt")
    gold = _ground_truth(item)
    if gold is None:
        raise RecordError("no gold answer under 'reward_model.ground_truth'")
    fields = {k: v for k, v in item.items() if k not in ("prompt", "reward_model")}
    return {"question": question, "gold_answer": gold, **fields}


_MAPPERS = {"oreal": _oreal, "math": _math, "gsm8k": _gsm8k, "chat": _chat, "verl_parquet": _verl}


def detect_format(path: Path, first: dict | None) -> tuple[str, str]:
    """(format, why) for `data.format: auto`."""
    if path.suffix == ".parquet":
        return "verl_parquet", "a .parquet file"
    first = first or {}
    if isinstance(first.get("messages"), list) or isinstance(first.get("prompt"), list):
        return "chat", "the first record's prompt is a list of messages"
    if isinstance(first.get("answer"), str) and _HASH_LINE.search(first["answer"]):
        return "gsm8k", "the first record's 'answer' is a worked solution with a '#### N' line"
    if "problem" in first and ("answer" in first or "solution" in first):
        return "math", "the first record has 'problem' and 'answer'/'solution'"
    return "oreal", "question/prompt/problem and gold_answer/answer fields"


def _read_parquet(path: Path, what: str) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        import pyarrow.parquet
    except ImportError:
        raise UserError(f"{what} {path}: reading parquet needs pyarrow: pip install -e \".[parquet]\"") from None
    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except Exception as err:  # pyarrow's errors (ArrowInvalid, OSError) say what is wrong with the file
        raise UserError(f"{what} {path}: not a readable parquet file ({type(err).__name__}: {err})") from None
    return list(enumerate(rows, start=1))


def read_items(path: Path, data_format: str = "auto", what: str = "prompt file"):
    """(numbered items in our fields, or a RecordError each, the format used, why, "line" or "row").

    Every record is mapped; a record that cannot be is returned as its RecordError, so that the caller can name all
    of a file's bad records at once."""
    check_format(data_format)
    parquet = data_format == "verl_parquet" or (data_format == "auto" and path.suffix == ".parquet")
    raw = _read_parquet(path, what) if parquet else read_objects(path, what)
    if data_format == "auto":
        data_format, why = detect_format(path, raw[0][1] if raw else None)
    else:
        why = "data.format"
    mapper = _MAPPERS[data_format]
    items = []
    for number, item in raw:
        try:
            items.append((number, mapper(item)))
        except RecordError as err:
            items.append((number, err))
    return items, data_format, why, "row" if parquet else "line"
