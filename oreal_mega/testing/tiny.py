"""Tiny HuggingFace models and a matching tokenizer, built locally for tests and benchmarks.

`make_tiny_model_dir(dir)` writes both into one directory that transformers, vLLM and
`oreal-mega` commands can load like any downloaded checkpoint:

    from oreal_mega.testing.tiny import make_tiny_model_dir
    model_dir = make_tiny_model_dir(tmp_path / "tiny", arch="qwen2", tie=False, seed=0)

Sizes are chosen for vLLM's CPU backend, which needs an attention head size in
{32, 64, 80, ...}: hidden 128 with 4 heads gives head size 32.
"""
from pathlib import Path

import torch

from oreal_mega.tasks.tokenizer import EOS_TOKEN, PAD_TOKEN, build_tokenizer, special_token_id

TINY_VOCAB_SIZE = 512

_ARCHITECTURES = {"qwen2": "Qwen2", "llama": "Llama"}


def _training_corpus() -> list[str]:
    """Deterministic math-flavoured text for training the tiny tokenizer's merges."""
    words = ("the answer is solve find compute let x y z sum product integer prime number "
             "equation value total therefore boxed step first then so we get")
    lines = []
    for a in range(60):
        for b in (3, 7, 11, 19):
            lines.append(f"{words.split()[a % 24]} {a} + {b} = {a + b}, {a} * {b} = {a * b}; "
                         f"\\boxed{{{a * b - b}}} {words}")
    return lines


def make_tiny_tokenizer(directory: str | Path):
    """The tiny byte-level BPE tokenizer (TINY_VOCAB_SIZE ids, chat template, special tokens
    at ids 0, 1, 2), saved to `directory`; returns the `PreTrainedTokenizerFast`."""
    return build_tokenizer(directory, _training_corpus(), vocab_size=TINY_VOCAB_SIZE)


def tiny_config(arch: str = "qwen2", tie: bool = False, **overrides):
    """The tiny model's transformers config: 2 layers, hidden 128, 4 heads of 32, 2 KV heads."""
    import transformers

    if arch not in _ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {sorted(_ARCHITECTURES)}")
    config_class = getattr(transformers, f"{_ARCHITECTURES[arch]}Config")
    settings = dict(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        bos_token_id=special_token_id(PAD_TOKEN),
        eos_token_id=special_token_id(EOS_TOKEN),
        pad_token_id=special_token_id(PAD_TOKEN),
    )
    settings.update(overrides)
    return config_class(**settings)


@torch.no_grad()
def randomize_weights(model: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Fill every parameter from a seeded generator: N(0, std) for matrices and biases,
    1 + N(0, 0.1) for norm scales. Larger than HF's 0.02 default so that next-token
    distributions are far from uniform and biases/norms are not trivially 0/1."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        if "norm" in name:
            param.copy_(1.0 + 0.1 * noise)
        else:
            param.copy_(std * noise)


def make_tiny_hf_model(directory: str | Path, arch: str = "qwen2", tie: bool = False,
                       seed: int = 0, **config_overrides):
    """Build a randomly initialised tiny causal LM, save it in fp32 (safetensors) and return it."""
    import transformers

    config = tiny_config(arch, tie, **config_overrides)
    model_class = getattr(transformers, f"{_ARCHITECTURES[arch]}ForCausalLM")
    torch.manual_seed(seed)
    model = model_class(config).to(torch.float32)
    randomize_weights(model, seed)
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(str(directory))
    return model.eval()


def make_tiny_model_dir(directory: str | Path, arch: str = "qwen2", tie: bool = False,
                        seed: int = 0, **config_overrides) -> Path:
    """Write a tiny model and its tokenizer into `directory` (created if missing); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    make_tiny_tokenizer(directory)
    make_tiny_hf_model(directory, arch, tie, seed, **config_overrides)
    return directory
