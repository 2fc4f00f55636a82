"""Read a HuggingFace `config.json` of a supported family and turn it into megatron-core settings.

Supported: Qwen2 / Qwen2.5 (`Qwen2ForCausalLM`) and Llama 3.x (`LlamaForCausalLM`): GQA, RoPE with
theta and llama3 scaling, RMSNorm, SwiGLU, optional qkv bias, tied or untied embeddings.
Anything this builder would silently get wrong (sliding window, other RoPE scalings, biases on the
MLP, other activations) is rejected with the field and its value.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from oreal_mega.errors import UserError

SUPPORTED_ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
# megatron-core's llama3 RoPE scaling has these constants built in.
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads")
_MEGATRON_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}


@dataclass(frozen=True)
class ModelArch:
    """The architecture facts of one HF model, in the names megatron-core uses."""

    family: str
    vocab_size: int
    hidden_size: int
    ffn_hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    norm_eps: float
    rope_theta: float
    rope_scaling_factor: float | None  # llama3-style scaling factor, None when unscaled
    qkv_bias: bool
    tie_word_embeddings: bool
    max_position_embeddings: int

    def padded_vocab_size(self, tp: int) -> int:
        """Smallest vocab ≥ the real one that splits evenly over `tp` ranks; rows past the real
        vocab are padding that the LM-head kernels mask out."""
        return math.ceil(self.vocab_size / tp) * tp


def read_hf_config(path: str | Path) -> dict:
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"HF config not found: {file}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{file}: not valid JSON ({err})") from None


def _rope(cfg: dict, where: str) -> tuple[float, float | None]:
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or params
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise UserError(f"{where}: rope type {rope_type!r} is not supported (default or llama3)")
    for key, expected in _MEGATRON_LLAMA3_ROPE.items():
        if float(scaling.get(key, expected)) != expected:
            raise UserError(f"{where}: rope scaling {key}={scaling.get(key)} is not supported "
                            f"(megatron-core's llama3 scaling uses {expected})")
    return float(theta), float(scaling["factor"])


def parse_arch(cfg: dict, where: str = "config.json") -> ModelArch:
    """Validate an HF config dict and extract the architecture; `where` names it in errors."""
    archs = cfg.get("architectures") or []
    family = next((SUPPORTED_ARCHITECTURES[a] for a in archs if a in SUPPORTED_ARCHITECTURES), None)
    if family is None:
        raise UserError(f"{where}: architectures={archs} is not supported "
                        f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    if cfg.get("hidden_act", "silu") != "silu":
        raise UserError(f"{where}: hidden_act={cfg['hidden_act']!r} is not supported (silu)")
    if cfg.get("use_sliding_window"):
        raise UserError(f"{where}: use_sliding_window=true is not supported")
    if cfg.get("mlp_bias"):
        raise UserError(f"{where}: mlp_bias=true is not supported")
    if family == "llama" and cfg.get("attention_bias"):
        raise UserError(f"{where}: attention_bias=true is not supported for Llama")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise UserError(f"{where}: missing required field(s) {', '.join(missing)}")
    heads = cfg["num_attention_heads"]
    theta, scaling = _rope(cfg, where)
    return ModelArch(
        family=family,
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        ffn_hidden_size=cfg["intermediate_size"],
        num_layers=cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_query_groups=cfg.get("num_key_value_heads") or heads,
        kv_channels=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling_factor=scaling,
        qkv_bias=family == "qwen2",
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=cfg.get("max_position_embeddings", 32768),
    )
