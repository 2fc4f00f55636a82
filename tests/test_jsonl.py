"""The shared JSONL reader: every malformed line reported in one error, with its real column."""
import pytest

from oreal_mega.errors import UserError
from oreal_mega.jsonl import MAX_REPORTED, read_objects


def _file(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_lines_come_back_with_their_numbers(tmp_path):
    path = _file(tmp_path, ['{"a": 1}', "", '{"b": 2}'])
    assert read_objects(path, "data file") == [(1, {"a": 1}), (3, {"b": 2})]


@pytest.mark.parametrize("line, message", [
    ('{"question": "b" "gold": "2"}', "Expecting ',' delimiter at column 18"),
    ('{"question": "c", gold: 3}', "Expecting property name enclosed in double quotes at column 19"),
    ('{"question": ', "Expecting value at column 14"),  # cut short: the column is the line's end, not 1
    ('{"q": 1}}', "Extra data at column 9"),
    ("[1, 2]", "expected a JSON object, got list"),
])
def test_one_bad_line_names_file_line_and_column(tmp_path, line, message):
    path = _file(tmp_path, ['{"ok": 1}', line])
    with pytest.raises(UserError) as err:
        read_objects(path, "data file")
    assert str(err.value) == f"{path}:2: " + (message if "expected" in message else f"not valid JSON ({message})")


def test_every_bad_line_is_reported_up_to_the_limit(tmp_path):
    path = _file(tmp_path, ['{"ok": 1}', "{oops", "[1]"] + ["nope"] * (MAX_REPORTED + 2))
    with pytest.raises(UserError) as err:
        read_objects(path, "data file")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {MAX_REPORTED + 4} bad lines: line 2: not valid JSON "
                              "(Expecting property name enclosed in double quotes at column 2); "
                              "line 3: expected a JSON object, got list; line 4: not valid JSON")
    assert f"line {MAX_REPORTED + 1}:" in message and f"line {MAX_REPORTED + 2}:" not in message
    assert message.endswith("; … 4 more")


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match=r"data file .*nope.jsonl does not exist"):
        read_objects(tmp_path / "nope.jsonl", "data file")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"latin1.jsonl: not UTF-8 text \(byte 10"):
        read_objects(path, "data file")
