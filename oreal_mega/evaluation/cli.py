"""`oreal-mega eval MODEL_DIR DATA.jsonl`: greedy pass@1 and pass@k of a model.

MODEL_DIR is an HF model directory, an oreal-mega model checkpoint, or a training checkpoint's
`step_N/` (its `policy/`); checkpoints are exported to a temporary HF directory first.

DATA is a prompt file in any `--format` (rollout/formats.py): `question`/`gold_answer`, MATH's
`problem` + `answer` or `solution`, GSM8K, chat messages, verl parquet.
Writes to --out (default MODEL_DIR/eval/DATA-stem): problems.jsonl (per problem: index, line, question,
gold, the record's other fields, the greedy and sampled answers with their verdict statuses), summary.json
(pass@1, pass@k, status counts, and the same by each `--group-by` field the records carry: `by_level`, ...)
and summary.txt (the printed table). `--backend` / `--fallback` choose the verifier as
`verifier.backend` / `verifier.fallback` do in training.
"""
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.evaluation.metrics import GROUP_FIELDS
from oreal_mega.jsonl import check_lines
from oreal_mega.rollout.formats import FORMATS
from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.verifier.backends import BACKENDS, DEFAULT_FALLBACK, check_choice
from oreal_mega.verifier.extract import FALLBACKS


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="HF model directory, oreal-mega model checkpoint or training step_N/")
    parser.add_argument("data", help="JSONL: question/problem/prompt + gold_answer/answer (or --format)")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="data format (default auto: detected from the fields, printed)")
    parser.add_argument("--k", type=int, default=8,
                        help="pass@k from sampled completions; 0 = greedy only (default 8)")
    parser.add_argument("--n", type=int, default=None,
                        help="samples per problem for the pass@k estimate (default k)")
    parser.add_argument("--temperature", type=float, default=1.0, help="for the samples")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=1024, help="new tokens per response")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N problems")
    parser.add_argument("--system-prompt", default=None, help="system message before each question")
    parser.add_argument("--no-chat-template", action="store_true",
                        help="send the question text as it is (base models)")
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("--dtype", default="auto", help="vLLM dtype: auto, bfloat16, float32")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=1,
                        help="KV cache size on CPU in GiB (VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--backend", choices=BACKENDS, default="oreal",
                        help="verifier: oreal (our rules) | math-verify (HF math-verify as verl calls it)")
    parser.add_argument("--fallback", choices=FALLBACKS, default=DEFAULT_FALLBACK,
                        help=f"oreal backend, response without an explicit answer (default {DEFAULT_FALLBACK})")
    parser.add_argument("--group-by", nargs="+", default=list(GROUP_FIELDS), metavar="FIELD",
                        help="record fields to break pass@1 / pass@k down by, where present (default "
                             f"{' '.join(GROUP_FIELDS)}; the original MATH release calls the subject 'type')")


def _hf_model(model_dir: Path, stack: ExitStack) -> Path:
    """`model_dir` itself when it is an HF directory, else a temporary HF export of the oreal-mega
    model checkpoint it is (or holds as `policy/`, as a training checkpoint's step directory does).
    Either way the architecture is checked first, as `train` checks it."""
    from oreal_mega.models.hf_config import parse_arch, read_hf_config
    from oreal_mega.weights.model_checkpoint import META_FILE, read_model_checkpoint

    if (model_dir / "config.json").is_file():
        parse_arch(read_hf_config(model_dir), where=str(model_dir / "config.json"))
        return model_dir
    checkpoint = next((d for d in (model_dir, model_dir / "policy") if (d / META_FILE).is_file()), None)
    if checkpoint is None:
        raise UserError(f"{model_dir} is neither a HF model directory (no config.json) nor an oreal-mega "
                        f"checkpoint (no {META_FILE} in it or in policy/)")
    read_model_checkpoint(checkpoint)
    hf_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oreal-eval-"))) / "hf"
    print(f"exporting checkpoint {checkpoint} to HF format in {hf_dir}", flush=True)
    # a separate process: the export sets up torch.distributed, which vLLM then wants for itself
    done = subprocess.run([sys.executable, "-m", "oreal_mega", "convert", "--to", "hf", str(checkpoint),
                           str(hf_dir), "--no-progress"], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise UserError(f"exporting {checkpoint} to HF failed: {last}")
    return hf_dir


def run(args) -> int:
    model_dir, data = Path(args.model_dir), Path(args.data)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    check_choice(args.backend, args.fallback, "the command line")
    records = read_prompts(data, args.format, announce=True)[:args.limit]
    check_lines(data, [(record.line, "no gold answer (gold_answer or answer); evaluation needs one on every line")
                       for record in records if record.gold is None])
    with ExitStack() as stack:
        return _evaluate(args, _hf_model(model_dir, stack), model_dir, data, records)


def _evaluate(args, hf_dir: Path, model_dir: Path, data: Path, records: list) -> int:
    from oreal_mega.evaluation.evaluate import evaluate

    try:
        result = evaluate(
            hf_dir, records, k=args.k, n=args.n, temperature=args.temperature,
            top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed,
            system_prompt=args.system_prompt, chat=not args.no_chat_template, progress=True,
            backend=args.backend, fallback=args.fallback, group_by=tuple(args.group_by),
            engine_kwargs=dict(dtype=args.dtype, seed=args.seed, max_model_len=args.max_model_len,
                               cpu_kv_cache_gib=args.cpu_kv_cache_gib))
    except ValueError as err:  # bad k/n/temperature combinations
        raise UserError(str(err)) from None
    out = Path(args.out) if args.out else model_dir / "eval" / data.stem
    paths = result.write(out)
    print(result.table())
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
