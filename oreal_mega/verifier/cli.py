"""`oreal-mega verify FILE.jsonl [--out OUT.jsonl] [--backend oreal|math-verify] [--fallback none|last_number]
[--judge-url URL --judge-model NAME]`: judge responses against gold answers."""
import json
import time
from collections import Counter
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.jsonl import parse_line
from oreal_mega.verifier.backends import BACKENDS, DEFAULT_FALLBACK, verify_function
from oreal_mega.verifier.extract import FALLBACKS
from oreal_mega.verifier.judge import JudgeConfig
from oreal_mega.verifier.pool import VerifierPool
from oreal_mega.verifier.verdict import STATUSES


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, help="JSONL, one object per line: response, gold, optional finished")
    parser.add_argument("--out", type=Path, help="write one verdict per input line (JSONL)")
    parser.add_argument("--workers", type=int, default=2, help="verifier worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per response (default 5)")
    parser.add_argument("--backend", choices=BACKENDS, default="oreal",
                        help="oreal: our rules | math-verify: HF math-verify as verl calls it (default oreal)")
    parser.add_argument("--fallback", choices=FALLBACKS, default=DEFAULT_FALLBACK,
                        help=f"oreal backend, response without an explicit answer (default {DEFAULT_FALLBACK})")
    parser.add_argument("--judge-url", help="OpenAI-compatible endpoint (e.g. http://host:8000/v1) of a model judge "
                                            "for rule-rejected answers; needs --judge-model")
    parser.add_argument("--judge-model", help="model name served at --judge-url")


def _read_item(path: Path, line_number: int, line: str) -> dict:
    try:
        item = parse_line(path, line_number, line)
    except UserError as err:
        raise ValueError(str(err)) from None
    for key in ("response", "gold"):
        if not isinstance(item.get(key), str):
            problem = "missing" if key not in item else f"must be a string, got {type(item[key]).__name__}"
            raise ValueError(f"{path}:{line_number}: key {key!r} {problem}")
    if not isinstance(item.get("question", ""), str):
        kind = type(item["question"]).__name__
        raise ValueError(f"{path}:{line_number}: key 'question' must be a string, got {kind}")
    if not isinstance(item.get("finished", True), bool):
        raise ValueError(f"{path}:{line_number}: key 'finished' must be true or false, got {item['finished']!r}")
    return item


def read_items(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, item) for every valid line, and one message per malformed line; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    items, problems = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((line_number, _read_item(path, line_number, line)))
        except ValueError as err:
            problems.append(str(err))
    return items, problems


def run(args) -> int:
    if args.workers < 1 or args.timeout <= 0:
        raise UserError(f"--workers must be >= 1 and --timeout > 0, got {args.workers} and {args.timeout}")
    if (args.judge_url is None) != (args.judge_model is None):
        raise UserError("--judge-url and --judge-model go together")
    judge = JudgeConfig(url=args.judge_url, model=args.judge_model) if args.judge_url else None
    verify_fn = verify_function(args.backend, args.fallback)
    items, problems = read_items(args.file)
    started = time.perf_counter()
    with VerifierPool(args.workers, args.timeout, judge=judge, verify_fn=verify_fn) as pool:
        verdicts = pool.verify_batch([item["response"] for _, item in items], [item["gold"] for _, item in items],
                                     [item.get("finished", True) for _, item in items],
                                     [item.get("question", "") for _, item in items])
        judge_counts = {k: v for k, v in pool.counters().items() if k.startswith("judge_")}
    elapsed = time.perf_counter() - started
    if args.out:
        with args.out.open("w", encoding="utf-8") as out:
            for (line_number, _), verdict in zip(items, verdicts):
                record = {"line": line_number, "correct": verdict.correct, "status": verdict.status,
                          "pred": verdict.pred, "message": verdict.message, "source": verdict.source}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    counts = Counter(verdict.status for verdict in verdicts)
    print(f"{len(verdicts)} responses in {elapsed:.2f} s ({len(verdicts) / max(elapsed, 1e-9):.0f} verdicts/s, "
          f"{args.workers} workers, worker start-up included)")
    print("  ".join(f"{status}: {counts[status]}" for status in STATUSES))
    if judge_counts:
        print("  ".join(f"{key}: {value}" for key, value in judge_counts.items()))
    if args.out:
        print(f"verdicts written to {args.out}")
    if problems:
        raise UserError(f"{len(problems)} malformed line(s) skipped (the others were judged):\n  " +
                        "\n  ".join(problems))
    return 0
