"""`oreal-mega eval MODEL_DIR DATA.jsonl`: greedy pass@1 and pass@k of an HF model directory.

DATA lines hold `question`/`gold_answer`, `problem`/`answer` (MATH-500) or `prompt`/`answer`.
Writes problems.jsonl, summary.json and summary.txt to --out (default MODEL_DIR/eval/DATA-stem).
"""
from pathlib import Path

from oreal_mega.cli import UserError


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="HF model directory (config, weights, tokenizer)")
    parser.add_argument("data", help="JSONL: question/problem/prompt + gold_answer/answer")
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


def run(args) -> int:
    from oreal_mega.evaluation.evaluate import evaluate
    from oreal_mega.rollout.prompts import read_prompts

    model_dir, data = Path(args.model_dir), Path(args.data)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir} is not a HF model directory (no config.json); for a "
                        "megatron checkpoint run `oreal-mega convert --to hf CKPT_DIR HF_DIR` first")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    records = read_prompts(data)[:args.limit]
    missing = [record.line for record in records if record.gold is None]
    if missing:
        raise UserError(f"{data}:{missing[0]}: no gold answer (gold_answer or answer); "
                        "evaluation needs one on every line")
    try:
        result = evaluate(
            model_dir, records, k=args.k, n=args.n, temperature=args.temperature,
            top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed,
            system_prompt=args.system_prompt, chat=not args.no_chat_template, progress=True,
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
