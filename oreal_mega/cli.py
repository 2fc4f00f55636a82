"""The `oreal-mega` command (also `python -m oreal_mega`): one subcommand per job.

Each job lives in its own module exposing `add_arguments(parser)` and `run(args) -> int | None`.
Modules are imported only when their subcommand runs, so `--help` stays instant.
"""
import argparse
import importlib
import sys

from oreal_mega.errors import UserError

COMMANDS = {
    "demo": ("oreal_mega.demo", "the whole pipeline on a tiny CPU model: data, SFT, eval, OREAL RL, eval, plot"),
    "sft": ("oreal_mega.trainer.sft", "supervised fine-tuning on prompt/response or chat JSONL (loss on responses)"),
    "train": ("oreal_mega.trainer.train_cli", "OREAL reinforcement learning (rollout, verify, update, sync) under torchrun"),
    "generate": ("oreal_mega.rollout.generate_cli", "offline rollouts with vLLM (JSONL prompts in, samples + verdicts out)"),
    "verify": ("oreal_mega.verifier.cli", "judge responses against gold answers (JSONL in, verdicts out)"),
    "convert": ("oreal_mega.weights.convert_cli", "HF checkpoint ⇄ megatron checkpoint (any TP/PP), atomically"),
    "data": ("oreal_mega.tasks.cli", "build task data: the synthetic math task, its tokenizer and a fresh tiny model"),
    "eval": ("oreal_mega.evaluation.cli", "greedy pass@1 and sampled pass@k of a model on problems with gold answers"),
    "bench": ("oreal_mega.bench", "measure a component: packing, kernels, verifier, convert, sync, train"),
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name][0])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oreal-mega",
        description="OREAL reinforcement learning for math reasoning on megatron-core + vLLM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, summary) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        if name == command:
            _load(name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        raise SystemExit(2)
    try:
        code = _load(args.command).run(args)
    except UserError as err:
        print(f"oreal-mega {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code or 0)
