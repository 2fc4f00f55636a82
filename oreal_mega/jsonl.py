"""Reading JSONL input files: one JSON object per line, errors naming the file, line and column."""
import json
from pathlib import Path

from oreal_mega.errors import UserError

MAX_REPORTED = 10  # bad lines named in one error; the rest are counted


def _decode(line: str) -> dict:
    """The line's JSON object, or ValueError saying what is wrong with it."""
    text = line.rstrip("\r\n")  # parsed alone, so the error position is the column in this line
    try:
        item = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.pos + 1})") from None
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    return item


def check_lines(path: Path, problems: list[tuple[int, str]], unit: str = "line") -> None:
    """One UserError for all of a file's bad lines (or parquet rows: `unit`), given as (number, what
    is wrong); the first MAX_REPORTED are named, the others counted."""
    if len(problems) == 1:
        number, detail = problems[0]
        raise UserError(f"{path}:{number}: {detail}" if unit == "line" else f"{path}: {unit} {number}: {detail}")
    if problems:
        shown = "; ".join(f"{unit} {number}: {detail}" for number, detail in problems[:MAX_REPORTED])
        more = len(problems) - MAX_REPORTED
        raise UserError(f"{path}: {len(problems)} bad {unit}s: {shown}" + (f"; … {more} more" if more > 0 else ""))


def parse_line(path: Path, number: int, line: str) -> dict:
    """One line's JSON object; anything else is a UserError naming the file and line."""
    try:
        return _decode(line)
    except ValueError as err:
        raise UserError(f"{path}:{number}: {err}") from None


def read_objects(path: Path, what: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `what` names the file's role in errors.
    Every malformed line is reported, in one UserError."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    objects, problems = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                objects.append((number, _decode(line)))
            except ValueError as err:
                problems.append((number, str(err)))
    check_lines(path, problems)
    return objects
