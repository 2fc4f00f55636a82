"""Qwen2 / Qwen2.5 (`Qwen2ForCausalLM`): Llama's layout plus biases on q, k and v."""
from oreal_mega.weights.mappings import TensorMap, llama

_ATTN = "model.layers.{i}.self_attn"

FIRST = llama.FIRST
LAYER = [
    *llama.LAYER[:2],
    TensorMap("decoder.layers.{i}.self_attention.linear_qkv.bias",
              (f"{_ATTN}.q_proj.bias", f"{_ATTN}.k_proj.bias", f"{_ATTN}.v_proj.bias"), "qkv"),
    *llama.LAYER[2:],
]
LAST = llama.LAST
