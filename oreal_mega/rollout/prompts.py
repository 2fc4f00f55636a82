"""Prompt files and prompt rendering shared by `oreal-mega generate`, `oreal-mega eval` and the
trainer.

A prompt line is a JSON object with the question under `question`, `prompt` or `problem` and,
optionally, a gold answer under `gold_answer` or `answer` (so MATH-500 files work as they are)
and a `pass_rate` in [0, 1] (for difficulty balancing). Any other keys (e.g. `level`) are kept
in `PromptRecord.extra`.
"""
from dataclasses import dataclass, field
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.jsonl import read_objects

QUESTION_KEYS = ("question", "prompt", "problem")
GOLD_KEYS = ("gold_answer", "answer")


@dataclass
class PromptRecord:
    line: int  # 1-based line in the source file (position in the list for in-memory prompts)
    question: str
    gold: str | None
    pass_rate: float | None = None
    extra: dict = field(default_factory=dict)


def parse_record(item, where: str, line: int) -> PromptRecord:
    """One prompt from a decoded JSON value; `where` ("file:line") prefixes any UserError."""
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(item).__name__}")
    question_key = next((key for key in QUESTION_KEYS if key in item), None)
    question = item.get(question_key)
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{where}: needs a non-empty string under one of "
                        f"{', '.join(QUESTION_KEYS)}")
    gold_key = next((key for key in GOLD_KEYS if key in item), None)
    gold = item.get(gold_key)
    if gold is not None and (isinstance(gold, bool) or not isinstance(gold, (str, int, float))):
        raise UserError(f"{where}: gold answer under {gold_key!r} must be a string or number, "
                        f"got {type(gold).__name__}")
    pass_rate = item.get("pass_rate")
    if pass_rate is not None and (isinstance(pass_rate, bool) or not isinstance(pass_rate, (int, float))
                                  or not 0.0 <= pass_rate <= 1.0):
        raise UserError(f"{where}: pass_rate must be a number in [0, 1], got {pass_rate!r}")
    extra = {key: value for key, value in item.items()
             if key not in (question_key, gold_key, "pass_rate")}
    return PromptRecord(line, question, None if gold is None else str(gold),
                        None if pass_rate is None else float(pass_rate), extra)


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """Parse a prompt file; a bad line raises UserError naming the file and line."""
    path = Path(path)
    records = [parse_record(item, f"{path}:{number}", number)
               for number, item in read_objects(path, "prompt file")]
    if not records:
        raise UserError(f"prompt file {path} holds no prompts")
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
