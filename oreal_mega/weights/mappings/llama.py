"""Llama 3.x (`LlamaForCausalLM`): no biases, SwiGLU, RMSNorm."""
from oreal_mega.weights.mappings import TensorMap

_ATTN = "model.layers.{i}.self_attn"

FIRST = [TensorMap("embedding.word_embeddings.weight", ("model.embed_tokens.weight",))]
LAYER = [
    TensorMap("decoder.layers.{i}.input_layernorm.weight", ("model.layers.{i}.input_layernorm.weight",)),
    TensorMap("decoder.layers.{i}.self_attention.linear_qkv.weight",
              (f"{_ATTN}.q_proj.weight", f"{_ATTN}.k_proj.weight", f"{_ATTN}.v_proj.weight"), "qkv"),
    TensorMap("decoder.layers.{i}.self_attention.linear_proj.weight", (f"{_ATTN}.o_proj.weight",)),
    TensorMap("decoder.layers.{i}.pre_mlp_layernorm.weight",
              ("model.layers.{i}.post_attention_layernorm.weight",)),
    TensorMap("decoder.layers.{i}.mlp.linear_fc1.weight",
              ("model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"), "stack"),
    TensorMap("decoder.layers.{i}.mlp.linear_fc2.weight", ("model.layers.{i}.mlp.down_proj.weight",)),
]
LAST = [
    TensorMap("decoder.final_layernorm.weight", ("model.norm.weight",)),
    TensorMap("output_layer.weight", ("lm_head.weight",)),
]
