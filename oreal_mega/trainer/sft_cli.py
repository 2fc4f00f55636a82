"""`oreal-mega sft CONFIG.yaml [key=value ...]`: supervised fine-tuning (see trainer/sft.py) under
torchrun, e.g. `torchrun --nproc-per-node 2 -m oreal_mega sft sft.yaml`. The config and the files
it names are checked before megatron or transformers is imported."""
import os

from oreal_mega.config import load_config, source_name
from oreal_mega.trainer.config import SFTConfig, validate_sft


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML config (see SFTConfig in oreal_mega/trainer/config.py)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-5")


def run(args) -> int:
    cfg = load_config(SFTConfig, args.config, args.overrides)
    validate_sft(cfg, source_name(args.config, args.overrides))
    from oreal_mega.trainer.sft import sft

    run_dir, finished = sft(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        where = f"HF model in {run_dir / 'hf'}" if finished else f"checkpoints in {run_dir / 'checkpoints'}"
        print(f"SFT {'finished' if finished else 'stopped early'}: metrics in {run_dir / 'metrics.jsonl'}, {where}")
    return 0  # also after an early stop: torchrun treats any other status as a failure (README "Reliability")
