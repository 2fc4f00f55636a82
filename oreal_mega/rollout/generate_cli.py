"""`oreal-mega generate MODEL_DIR PROMPTS.jsonl --out OUT.jsonl`: offline rollouts with vLLM.

Each prompt line is a JSON object with the question under `question`, `prompt` or `problem`
and, optionally, a gold answer under `gold_answer` or `answer`. Questions go through the
tokenizer's chat template as one user message. Every sample becomes one output line; when
gold answers exist the samples are verified (`--backend` / `--fallback`, as `verifier.backend` /
`verifier.fallback` in training) and pass rates are printed.
"""
import json
import time
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.rollout.formats import FORMATS
from oreal_mega.rollout.prompts import PromptRecord, encode_prompts, read_prompts
from oreal_mega.verifier import VerifierPool
from oreal_mega.verifier.backends import BACKENDS, DEFAULT_FALLBACK, check_choice, verify_function
from oreal_mega.verifier.extract import FALLBACKS


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="HF model directory (config, weights, tokenizer)")
    parser.add_argument("prompts", help="JSONL file: question/prompt/problem [+ gold_answer/answer] (or --format)")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="prompt file format (default auto: detected from the fields, printed)")
    parser.add_argument("--out", required=True, help="output JSONL, one line per sample")
    parser.add_argument("--n", type=int, default=16, help="samples per prompt (default 16)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1, help="-1 disables top-k")
    parser.add_argument("--max-tokens", type=int, default=1024, help="new tokens per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="auto", help="vLLM dtype: auto, bfloat16, float32")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--no-chat-template", action="store_true",
                        help="send the question text as it is (base models)")
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=1,
                        help="KV cache size on CPU in GiB (VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--backend", choices=BACKENDS, default="oreal",
                        help="verifier: oreal (our rules) | math-verify (HF math-verify as verl calls it)")
    parser.add_argument("--fallback", choices=FALLBACKS, default=DEFAULT_FALLBACK,
                        help=f"oreal backend, response without an explicit answer (default {DEFAULT_FALLBACK})")


def verify_samples(records: list[PromptRecord], samples, backend: str = "oreal",
                   fallback: str = DEFAULT_FALLBACK) -> list[list] | None:
    """Verdicts per sample, judged with `backend` and `fallback`, when every prompt has a gold answer."""
    if any(record.gold is None for record in records):
        return None
    responses = [sample.text for per_prompt in samples for sample in per_prompt]
    golds = [records[sample.prompt_index].gold for per_prompt in samples for sample in per_prompt]
    finished = [sample.finish_reason == "stop" for per_prompt in samples for sample in per_prompt]
    with VerifierPool(verify_fn=verify_function(backend, fallback)) as pool:
        flat = pool.verify_batch(responses, golds, finished)
    verdicts, start = [], 0
    for per_prompt in samples:
        verdicts.append(flat[start:start + len(per_prompt)])
        start += len(per_prompt)
    return verdicts


def run(args) -> int:
    from oreal_mega.models.hf_config import parse_arch, read_hf_config
    from oreal_mega.rollout.base import SamplingConfig

    check_choice(args.backend, args.fallback, "the command line")
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir} is not a HF model directory (no config.json)")
    parse_arch(read_hf_config(model_dir), where=str(model_dir / "config.json"))  # as `train` checks it
    try:
        sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                                  top_k=args.top_k, max_tokens=args.max_tokens, seed=args.seed)
    except ValueError as err:
        raise UserError(str(err)) from None
    records = read_prompts(Path(args.prompts), args.format, announce=True)
    from transformers import AutoTokenizer

    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    prompts = encode_prompts(tokenizer, records, chat=not args.no_chat_template)

    engine = VLLMRolloutEngine(str(model_dir), dtype=args.dtype, seed=args.seed,
                               max_model_len=args.max_model_len,
                               cpu_kv_cache_gib=args.cpu_kv_cache_gib)
    start = time.perf_counter()
    samples = engine.generate(prompts, sampling, progress=True)
    seconds = time.perf_counter() - start
    engine.shutdown()
    new_tokens = sum(len(sample.token_ids) for per_prompt in samples for sample in per_prompt)
    print(f"{len(records)} prompts x {args.n} samples: {new_tokens} new tokens in "
          f"{seconds:.1f} s ({new_tokens / seconds:.0f} tokens/s)")

    verdicts = verify_samples(records, samples, args.backend, args.fallback)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record, per_prompt, prompt_verdicts in zip(records, samples,
                                                      verdicts or [None] * len(records)):
            for sample_index, sample in enumerate(per_prompt):
                row = {"prompt_index": sample.prompt_index, "line": record.line,
                       "question": record.question, "sample_index": sample_index,
                       "response": sample.text, "token_ids": sample.token_ids,
                       "finish_reason": sample.finish_reason,
                       "logprob_sum": float(sample.logprobs.sum())}
                if record.gold is not None:
                    row["gold_answer"] = record.gold
                if prompt_verdicts is not None:
                    verdict = prompt_verdicts[sample_index]
                    row.update(correct=verdict.correct, status=verdict.status, pred=verdict.pred)
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {sum(len(p) for p in samples)} samples to {out}")
    if verdicts is not None:
        correct = [[verdict.correct for verdict in per_prompt] for per_prompt in verdicts]
        pass_at_1 = sum(map(sum, correct)) / sum(map(len, correct))
        pass_at_n = sum(any(per_prompt) for per_prompt in correct) / len(correct)
        print(f"pass@1 {pass_at_1:.4f}  pass@{args.n} {pass_at_n:.4f}  over {len(correct)} prompts")
    return 0
