"""Prompt files and prompt rendering shared by `oreal-mega generate`, `oreal-mega eval` and the
trainer.

A prompt has a question under `question`, `prompt` or `problem` and, optionally, a gold answer
under `gold_answer` or `answer` and a `pass_rate` in [0, 1] (for difficulty balancing). Any other
keys (e.g. `level`) are kept in `PromptRecord.extra`. Files in other formats (MATH, GSM8K, chat
messages, verl parquet: `data.format`) are mapped to these fields by `formats.py`.
"""
from dataclasses import dataclass, field
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.jsonl import check_lines
from oreal_mega.rollout.formats import GOLD_KEYS, QUESTION_KEYS, RecordError, read_items


@dataclass
class PromptRecord:
    line: int  # 1-based line in the source file (position in the list for in-memory prompts)
    question: str
    gold: str | None
    pass_rate: float | None = None
    extra: dict = field(default_factory=dict)


def _record(item, line: int) -> PromptRecord:
    """One prompt from a decoded value in our fields; RecordError says what is wrong."""
    if not isinstance(item, dict):
        raise RecordError(f"expected a JSON object, got {type(item).__name__}")
    question_key = next((key for key in QUESTION_KEYS if key in item), None)
    question = item.get(question_key)
    if not isinstance(question, str) or not question.strip():
        raise RecordError(f"needs a non-empty string under one of {', '.join(QUESTION_KEYS)}")
    gold_key = next((key for key in GOLD_KEYS if key in item), None)
    gold = item.get(gold_key)
    if gold is not None and (isinstance(gold, bool) or not isinstance(gold, (str, int, float))):
        raise RecordError(f"gold answer under {gold_key!r} must be a string or number, got {type(gold).__name__}")
    pass_rate = item.get("pass_rate")
    if pass_rate is not None and (isinstance(pass_rate, bool) or not isinstance(pass_rate, (int, float))
                                  or not 0.0 <= pass_rate <= 1.0):
        raise RecordError(f"pass_rate must be a number in [0, 1], got {pass_rate!r}")
    extra = {key: value for key, value in item.items()
             if key not in (question_key, gold_key, "pass_rate")}
    return PromptRecord(line, question, None if gold is None else str(gold),
                        None if pass_rate is None else float(pass_rate), extra)


def parse_record(item, where: str, line: int) -> PromptRecord:
    """One prompt from a decoded JSON value; `where` ("file:line") prefixes any UserError."""
    try:
        return _record(item, line)
    except RecordError as err:
        raise UserError(f"{where}: {err}") from None


def read_prompts(path: str | Path, data_format: str = "auto", announce: bool = False) -> list[PromptRecord]:
    """Parse a prompt file in `data_format` (formats.FORMATS); all bad records (up to jsonl.MAX_REPORTED named)
    raise one UserError naming the file and each line or row. `announce`: print the format used, in one line."""
    path = Path(path)
    items, used, why, unit = read_items(path, data_format)
    records, problems = [], []
    for number, item in items:
        try:
            if isinstance(item, RecordError):
                raise item
            records.append(_record(item, number))
        except RecordError as err:
            problems.append((number, str(err)))
    check_lines(path, problems, unit)
    if not records:
        raise UserError(f"prompt file {path} holds no prompts")
    if announce:
        print(f"{path}: {len(records)} prompts, data format {used} ({why})", flush=True)
    return records


def records_from_dicts(items: list[dict]) -> list[PromptRecord]:
    """In-memory prompts (same keys as a prompt file); `line` is the 1-based position."""
    return [parse_record(item, f"prompt {index}", index)
            for index, item in enumerate(items, start=1)]


def encode_prompts(tokenizer, records: list[PromptRecord], chat: bool,
                   system_prompt: str | None = None) -> list[list[int]]:
    """Token ids of each record's question: through the chat template as one user message
    (after an optional system message), or as plain text when `chat` is False."""
    if chat and not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; pass --no-chat-template to send "
                        "questions as plain text")
    if system_prompt is not None and not chat:
        raise UserError("a system prompt needs the chat template")
    encoded = []
    for record in records:
        text = record.question
        if chat:
            messages = [{"role": "user", "content": text}]
            if system_prompt is not None:
                messages.insert(0, {"role": "system", "content": system_prompt})
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=False)
        encoded.append(tokenizer(text, add_special_tokens=not chat)["input_ids"])
    return encoded
