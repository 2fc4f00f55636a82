"""Reading JSONL input files: one JSON object per line, errors naming the file and line."""
import json
from collections.abc import Iterator
from pathlib import Path

from oreal_mega.errors import UserError


def parse_line(path: Path, number: int, line: str) -> dict:
    """One line's JSON object; anything else is a UserError naming the file and line."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(item, dict):
        raise UserError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
    return item


def read_objects(path: Path, what: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `what` names the file's role in errors."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, parse_line(path, number, line)
