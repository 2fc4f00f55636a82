"""For megatron layout tests: tiny HF-style configs (dicts) of each supported family, and full
(single-process) states and gradients moved into / gathered from one rank of a TP/PP layout."""
import torch

from oreal_mega.weights.layout import gather_tp, global_layer_names, is_vocab_parallel, pad_vocab, shard

_COMMON = dict(vocab_size=250, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
               max_position_embeddings=256, hidden_act="silu")

TINY_CONFIGS = {
    "qwen2": dict(_COMMON, architectures=["Qwen2ForCausalLM"], rope_theta=1e6, tie_word_embeddings=False),
    "qwen2-tied": dict(_COMMON, architectures=["Qwen2ForCausalLM"], rope_theta=1e6, tie_word_embeddings=True),
    # 251 does not split over TP=2: the vocab gets one padding row that must stay invisible.
    "qwen2-odd-vocab": dict(_COMMON, architectures=["Qwen2ForCausalLM"], rope_theta=1e6,
                            tie_word_embeddings=True, vocab_size=251),
    "llama": dict(_COMMON, architectures=["LlamaForCausalLM"], tie_word_embeddings=False,
                  rope_parameters=dict(rope_theta=5e5, rope_type="llama3", factor=8.0,
                                       low_freq_factor=1.0, high_freq_factor=4.0,
                                       original_max_position_embeddings=8192)),
}


def load_full_state(chunks: list[torch.nn.Module], full: dict[str, torch.Tensor],
                    tie_word_embeddings: bool) -> None:
    """Copy a full (single-process) state into this rank's chunks, padding the vocab and
    slicing for TP."""
    from megatron.core import parallel_state

    tp, tp_rank = (parallel_state.get_tensor_model_parallel_world_size(),
                   parallel_state.get_tensor_model_parallel_rank())
    for chunk in chunks:
        params = dict(chunk.named_parameters())
        for local, name in global_layer_names(chunk).items():
            if name == "output_layer.weight" and tie_word_embeddings:
                name = "embedding.word_embeddings.weight"  # PP's last-stage copy of the tied head
            with torch.no_grad():
                params[local].copy_(shard(name, pad_vocab(name, full[name], tp), tp_rank, tp))


def gather_full_grads(chunks: list[torch.nn.Module], vocab_size: int) -> dict[str, torch.Tensor]:
    """This pipeline stage's gradients as full tensors under full names (from DDP `main_grad`),
    vocab padding removed; the last stage's copy of a tied LM head is left out."""
    from megatron.core import parallel_state

    group = parallel_state.get_tensor_model_parallel_group()
    grads = {}
    for chunk in chunks:
        module = chunk.module if hasattr(chunk, "module") else chunk
        params = dict(module.named_parameters())
        for local, name in global_layer_names(module).items():
            param = params[local]
            if getattr(param, "shared_embedding", False) and not module.pre_process:
                continue
            grad = param.main_grad if hasattr(param, "main_grad") else param.grad
            grad = gather_tp(name, grad.detach(), group)
            grads[name] = grad[:vocab_size] if is_vocab_parallel(name) else grad
    return grads
