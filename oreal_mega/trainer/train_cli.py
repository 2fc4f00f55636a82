"""`oreal-mega train CONFIG.yaml [key=value ...]`: OREAL reinforcement learning under torchrun,
e.g. `torchrun --nproc-per-node 8 -m oreal_mega train examples/qwen2.5-7b-1node.yaml`. The config
and the files it names are checked before megatron, vLLM or transformers is imported."""
import os

from oreal_mega.config import load_config, source_name
from oreal_mega.trainer.config import TrainConfig, validate


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML config (see oreal_mega/trainer/config.py for every key)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-6 parallel.tp=2")


def run(args) -> int:
    cfg = load_config(TrainConfig, args.config, args.overrides)
    validate(cfg, source_name(args.config, args.overrides))
    from oreal_mega.trainer.loop import train

    run_dir, finished = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run {'finished' if finished else 'stopped early'}: metrics in {run_dir / 'metrics.jsonl'}, "
              f"checkpoints in {run_dir / 'checkpoints'}")
    return 0  # also after an early stop: torchrun treats any other status as a failure (README "Reliability")
