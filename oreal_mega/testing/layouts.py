"""Tiny HF-style configs (dicts) of each supported family for megatron layout tests."""
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
