"""`oreal-mega data synthetic --out DIR`: the synthetic math task's data, tokenizer and a fresh
tiny model, ready for `oreal-mega sft`, `train` and `eval`.

DIR/model/           tokenizer + randomly initialised tiny Qwen2 (HF directory)
DIR/sft.jsonl        prompt/response pairs (worked solutions ending in \\boxed{})
DIR/rl_prompts.jsonl question/gold_answer/level/solution, disjoint from the SFT problems
DIR/eval.jsonl       problem/answer/level (MATH-500 style), held out from both
"""
from pathlib import Path

from oreal_mega.errors import UserError
from oreal_mega.tasks.synthetic_math import MAX_FACTOR, MAX_OPERAND


def add_arguments(parser) -> None:
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    synthetic = sources.add_parser("synthetic", help="the built-in synthetic math task")
    synthetic.add_argument("--out", required=True, help="output directory")
    synthetic.add_argument("--seed", type=int, default=0, help="data seed (and model init seed)")
    synthetic.add_argument("--train", type=int, default=5000, help="SFT problems (default 5000)")
    synthetic.add_argument("--rl", type=int, default=None,
                           help="RL prompts, disjoint from the SFT problems (default --train)")
    synthetic.add_argument("--eval", type=int, default=500, help="held-out problems (default 500)")
    synthetic.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4],
                           help="difficulty levels 1..5, balanced (default 1 2 3 4)")
    synthetic.add_argument("--max-operand", type=int, default=MAX_OPERAND,
                           help=f"operands in 0..N (default {MAX_OPERAND}); smaller is easier")
    synthetic.add_argument("--max-factor", type=int, default=MAX_FACTOR,
                           help=f"factors in 2..N (default {MAX_FACTOR}); smaller is easier")
    synthetic.add_argument("--hidden-size", type=int, default=None,
                           help="the model's width, a multiple of 64 (default 128: the 0.8M-parameter demo model)")
    synthetic.add_argument("--layers", type=int, default=None, help="the model's layers (default 4)")
    synthetic.add_argument("--no-model", action="store_true",
                           help="write only the data and the tokenizer, no model weights")


def run(args) -> int:
    from oreal_mega.tasks.demo_model import build_task_tokenizer, make_demo_model_dir
    from oreal_mega.tasks.synthetic_math import make_splits, write_eval, write_rl_prompts, write_sft

    if args.hidden_size is not None and (args.hidden_size <= 0 or args.hidden_size % 64):
        raise UserError(f"--hidden-size must be a positive multiple of 64, got {args.hidden_size}")
    if args.layers is not None and args.layers <= 0:
        raise UserError(f"--layers must be >= 1, got {args.layers}")
    rl = args.train if args.rl is None else args.rl
    for flag, value in (("--train", args.train), ("--rl", rl), ("--eval", args.eval)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    out = Path(args.out)
    try:
        sft_problems, rl_problems, eval_problems = make_splits(
            [args.train, rl, args.eval], args.seed, args.levels,
            max_operand=args.max_operand, max_factor=args.max_factor)
    except ValueError as err:
        raise UserError(f"--levels {' '.join(map(str, args.levels))} --max-operand "
                        f"{args.max_operand} --max-factor {args.max_factor}: {err}") from None

    model_dir = out / "model"
    if args.no_model:
        model_dir.mkdir(parents=True, exist_ok=True)
        build_task_tokenizer(model_dir)
    else:
        make_demo_model_dir(model_dir, seed=args.seed, hidden_size=args.hidden_size, layers=args.layers)
    written = {
        "model" if not args.no_model else "tokenizer": model_dir,
        f"SFT data ({len(sft_problems)} problems)": write_sft(out / "sft.jsonl", sft_problems),
        f"RL prompts ({len(rl_problems)})": write_rl_prompts(out / "rl_prompts.jsonl", rl_problems),
        f"held-out eval ({len(eval_problems)})": write_eval(out / "eval.jsonl", eval_problems),
    }
    print(f"synthetic math, levels {args.levels}, operands 0..{args.max_operand}, factors "
          f"2..{args.max_factor}, seed {args.seed}:")
    for what, path in written.items():
        print(f"  {what:<28} {path}")
    return 0
