"""`oreal-mega verify FILE.jsonl [--out OUT.jsonl]`."""
import json

import pytest

from oreal_mega.cli import main

pytestmark = pytest.mark.slow  # starts verifier worker processes


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_verify_writes_verdicts_and_summary(tmp_path, capsys):
    source = _write_lines(tmp_path / "rollouts.jsonl", [
        json.dumps({"response": "so \\boxed{\\frac{1}{2}}", "gold": "0.5"}),
        "",
        json.dumps({"response": "so \\boxed{3}", "gold": "4"}),
        json.dumps({"response": "so \\boxed{4", "gold": "4", "finished": False}),
        json.dumps({"response": "no box here", "gold": "4"}),
    ])
    out = tmp_path / "verdicts.jsonl"
    code, stdout, _ = _run(["verify", str(source), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["status"], r["correct"]) for r in records] == [
        (1, "correct", True), (3, "wrong", False), (4, "truncated", False), (5, "no_answer", False)]
    assert records[0]["pred"] == "\\frac{1}{2}"
    assert "4 responses" in stdout and "verdicts/s" in stdout
    assert "correct: 1  wrong: 1  no_answer: 1  truncated: 1  timeout: 0  error: 0" in stdout


def test_malformed_lines_are_named_and_the_rest_is_judged(tmp_path, capsys):
    source = _write_lines(tmp_path / "bad.jsonl", [
        json.dumps({"response": "\\boxed{1}", "gold": "1"}),
        '{"response": "\\\\boxed{2}", "gold": ',
        json.dumps({"response": "\\boxed{3}", "gold": "3"}),
        json.dumps({"response": "\\boxed{4}"}),
        json.dumps({"response": "\\boxed{5}", "gold": 5}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"response": "\\boxed{7}", "gold": "7", "finished": "yes"}),
    ])
    out = tmp_path / "verdicts.jsonl"
    code, _, stderr = _run(["verify", str(source), "--out", str(out), "--workers", "1"], capsys)
    assert code == 2
    assert "Traceback" not in stderr
    assert f"{source}:2: not valid JSON" in stderr
    assert f"{source}:4: key 'gold' missing" in stderr
    assert f"{source}:5: key 'gold' must be a string, got int" in stderr
    assert f"{source}:6: expected a JSON object, got list" in stderr
    assert f"{source}:7: key 'finished' must be true or false" in stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["status"]) for r in records] == [(1, "correct"), (3, "correct")]


def test_missing_file_is_a_user_error(tmp_path, capsys):
    code, _, stderr = _run(["verify", str(tmp_path / "absent.jsonl")], capsys)
    assert code == 2 and "absent.jsonl" in stderr and "Traceback" not in stderr
