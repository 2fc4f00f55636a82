"""Weight-sync speed: seconds and GB/s to push a full HF state dict into the vLLM engine.

The model comes from an HF config.json (random weights, no download): vLLM starts with
`load_format="dummy"`, and the pushed state dict is random tensors in the engine's dtype with
the HF names and shapes of that config. Times are per complete `update_weights` call
(bucketing, layer-wise reload, CPU repacking included), best and median of --repeats.
"""
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from oreal_mega.bench.machine import print_header
from oreal_mega.errors import UserError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_arguments(parser) -> None:
    parser.add_argument("config", help="HF config.json (or a directory holding one)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="bfloat16")
    parser.add_argument("--bucket-mb", type=int, default=1024, help="bucket size in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=1)


def random_state_dict(config, dtype: torch.dtype, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """HF names and shapes of the config's causal LM, filled with N(0, 0.02) values."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    tied = getattr(config, "tie_word_embeddings", False)
    named = []
    for name, param in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # the same tensor as the embedding
        values = torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02
        named.append((name, values.to(dtype)))
    return named


def run(args) -> int:
    from transformers import AutoConfig

    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine

    config_path = Path(args.config)
    if config_path.is_dir():
        config_path = config_path / "config.json"
    if not config_path.is_file():
        raise UserError(f"{config_path} does not exist")
    try:
        json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{config_path}: not valid JSON ({err.msg})") from None
    with tempfile.TemporaryDirectory() as model_dir:
        shutil.copy(config_path, Path(model_dir) / "config.json")
        config = AutoConfig.from_pretrained(model_dir)
        named = random_state_dict(config, _DTYPES[args.dtype])
        parameters = sum(tensor.numel() for _, tensor in named)
        engine = VLLMRolloutEngine(
            model_dir, dtype=args.dtype, max_model_len=256, bucket_bytes=args.bucket_mb << 20,
            cpu_kv_cache_gib=args.cpu_kv_cache_gib,
            extra_engine_args={"load_format": "dummy", "skip_tokenizer_init": True})
        runs = [engine.update_weights(named) for _ in range(args.repeats)]
        engine.shutdown()
    seconds = [stats.seconds for stats in runs]
    print_header()
    print(f"model: {config_path} ({config.model_type}, {parameters / 1e6:.1f} M parameters, "
          f"{args.dtype}), {runs[0].bytes / 1e9:.3f} GB in {runs[0].buckets} buckets of "
          f"<= {args.bucket_mb} MiB, {runs[0].tensors} tensors")
    best, median = min(seconds), statistics.median(seconds)
    print(f"sync: best {best:.3f} s ({runs[0].bytes / 1e9 / best:.2f} GB/s), median "
          f"{median:.3f} s ({runs[0].bytes / 1e9 / median:.2f} GB/s) over {len(runs)} runs")
    return 0
