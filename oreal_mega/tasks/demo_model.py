"""The demo's starting point: the synthetic task's tokenizer and a freshly initialised tiny Qwen2.

`make_demo_model_dir(dir, seed)` writes an HF model directory (config.json, fp32 safetensors,
generation_config.json, tokenizer) that transformers, vLLM and `oreal-mega convert` load like a
downloaded checkpoint. The architecture is `oreal_mega/data/tiny-qwen2.json` (hidden 128, 4 heads
of 32 — vLLM's CPU attention needs head size >= 32 — 2 KV heads, 4 layers, vocab 512, tied).
The weights use transformers' own initialisation (normal, std `initializer_range`), which is
meant for training, unlike `oreal_mega.testing.tiny`'s large random weights for parity tests.
"""
import json
from importlib import resources
from pathlib import Path

from oreal_mega.tasks.synthetic_math import LEVELS, generate
from oreal_mega.tasks.tokenizer import (
    CHAT_ROLES,
    EOS_TOKEN,
    PAD_TOKEN,
    build_tokenizer,
    special_token_id,
)

DEMO_CONFIG = resources.files("oreal_mega") / "data" / "tiny-qwen2.json"
TOKENIZER_CORPUS_SEED = 12345
TOKENIZER_CORPUS_PROBLEMS = 4000


def task_corpus(problems: list[dict]) -> list[str]:
    """The text a chat model sees for each problem, roles included, as tokenizer training text."""
    system, user, assistant = CHAT_ROLES
    return [f"{system}\n{user}\n{problem['question']}\n{assistant}\n{problem['solution']}\n"
            for problem in problems]


def build_task_tokenizer(directory: str | Path):
    """The synthetic task's tokenizer, trained on a fixed corpus of every level (the same for
    every data seed, so runs with different seeds share one vocabulary)."""
    vocab_size = json.loads(DEMO_CONFIG.read_text())["vocab_size"]
    corpus = task_corpus(generate(TOKENIZER_CORPUS_PROBLEMS, TOKENIZER_CORPUS_SEED, LEVELS))
    return build_tokenizer(directory, corpus, vocab_size=vocab_size)


def demo_config(hidden_size: int | None = None, layers: int | None = None):
    """The tiny Qwen2 config, with the special-token ids of the task tokenizer; `hidden_size` and
    `layers` scale it (heads of 32, half as many KV heads, the MLP 2.75 times as wide, as the demo's)."""
    from transformers import Qwen2Config

    settings = json.loads(DEMO_CONFIG.read_text())
    settings.pop("architectures")
    settings.pop("model_type")
    if hidden_size is not None:
        heads = hidden_size // settings["head_dim"]
        settings.update(hidden_size=hidden_size, num_attention_heads=heads, num_key_value_heads=max(heads // 2, 1),
                        intermediate_size=hidden_size * settings["intermediate_size"] // settings["hidden_size"])
    if layers is not None:
        settings["num_hidden_layers"] = layers
    return Qwen2Config(**settings, bos_token_id=special_token_id(PAD_TOKEN),
                       eos_token_id=special_token_id(EOS_TOKEN),
                       pad_token_id=special_token_id(PAD_TOKEN))


def make_demo_model_dir(directory: str | Path, seed: int = 0, hidden_size: int | None = None,
                        layers: int | None = None) -> Path:
    """Write the task tokenizer and a freshly initialised tiny Qwen2 (fp32) into `directory`
    (`hidden_size`, `layers`: see `demo_config`)."""
    import torch
    from transformers import Qwen2ForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_task_tokenizer(directory)
    config = demo_config(hidden_size, layers)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.save_pretrained(str(directory))
    return directory
