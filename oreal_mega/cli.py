"""The `oreal-mega` command (also `python -m oreal_mega`): one subcommand per job.

Each job lives in its own module exposing `add_arguments(parser)` and `run(args) -> int | None`.
Modules are imported only when their subcommand runs, so `--help` stays instant.

A `UserError` is printed as one line and the process exits with status 2. Under torchrun every
rank checks the same config, so rank 0 alone prints it (and hands it to torchrun's failure
summary); the others exit 2 silently when torchrun stops them, and print their own error only if
torchrun has not stopped them after PEER_GRACE_S seconds (an error of that rank alone).
"""
import argparse
import importlib
import json
import os
import signal
import sys
import time

from oreal_mega.distributed import die_with_launcher
from oreal_mega.errors import UserError

PEER_GRACE_S = 10.0

COMMANDS = {
    "demo": ("oreal_mega.demo", "the whole pipeline on a tiny CPU model: data, SFT, eval, OREAL RL, eval, plot"),
    "sft": ("oreal_mega.trainer.sft_cli", "supervised fine-tuning on prompt/response or chat JSONL (loss on responses)"),
    "train": ("oreal_mega.trainer.train_cli", "OREAL reinforcement learning (rollout, verify, update, sync) under torchrun"),
    "generate": ("oreal_mega.rollout.generate_cli", "offline rollouts with vLLM (JSONL prompts in, samples + verdicts out)"),
    "verify": ("oreal_mega.verifier.cli", "judge responses against gold answers (JSONL in, verdicts out)"),
    "convert": ("oreal_mega.weights.convert_cli", "HF checkpoint ⇄ megatron checkpoint (any TP/PP), atomically"),
    "data": ("oreal_mega.tasks.cli", "build task data: the synthetic math task, its tokenizer and a fresh tiny model"),
    "eval": ("oreal_mega.evaluation.cli", "greedy pass@1 and sampled pass@k of a model on problems with gold answers"),
    "bench": ("oreal_mega.bench", "measure a component: packing, kernels, verifier, convert, sync, train; gpu-check"),
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


def _report(command: str, err: UserError) -> None:
    """Print `err` as one line, once per job (see the module docstring); exits with status 2."""
    rank = int(os.environ.get("RANK", "0"))
    message = f"oreal-mega {command}: error: {err}"
    if rank != 0:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(2))
        time.sleep(PEER_GRACE_S)
        message = f"oreal-mega {command}: error on rank {rank}: {err}"
    print(message, file=sys.stderr, flush=True)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:  # torchrun's failure summary shows this message instead of a pointer to its docs
        with open(error_file, "w") as handle:
            json.dump({"message": {"message": message, "extraInfo": {"timestamp": str(int(time.time()))}}},
                      handle)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    die_with_launcher()
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        raise SystemExit(2)
    try:
        code = _load(args.command).run(args)
    except UserError as err:
        _report(args.command, err)
    raise SystemExit(code or 0)
