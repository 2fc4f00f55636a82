"""Model builder: HF config validation and packed (THD) vs padded batches."""
import copy

import pytest
import torch

from oreal_mega.errors import UserError
from oreal_mega.models.attention import packed_seq_params
from oreal_mega.models.hf_config import parse_arch
from oreal_mega.testing.layouts import TINY_CONFIGS


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_packed_matches_padded(megatron_world, arch):
    from oreal_mega.models.builder import build_model

    [model] = build_model(parse_arch(TINY_CONFIGS[arch]))
    lengths = [9, 4, 13]
    gen = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, 250, (n,), generator=gen) for n in lengths]
    longest = max(lengths)
    padded = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    positions = torch.arange(longest).expand(len(seqs), longest)
    with torch.no_grad():
        padded_out = model(padded, positions, None)  # [b, s, V]
        packed_out = model(torch.cat(seqs)[None], torch.cat([torch.arange(n) for n in lengths])[None],
                           None, packed_seq_params=packed_seq_params(lengths))[0]
    start = 0
    for i, n in enumerate(lengths):
        expected = padded_out[i, :n].double()
        got = packed_out[start:start + n].double()
        assert ((got - expected).norm() / expected.norm()) <= 1e-5
        start += n


def _broken(**changes):
    cfg = copy.deepcopy(TINY_CONFIGS["qwen2"])
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("cfg, message", [
    (_broken(architectures=["MistralForCausalLM"]), "architectures=['MistralForCausalLM'] is not supported"),
    (_broken(hidden_act="gelu"), "hidden_act='gelu'"),
    (_broken(use_sliding_window=True), "use_sliding_window"),
    (_broken(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope type 'yarn'"),
    ({k: v for k, v in TINY_CONFIGS["qwen2"].items() if k != "hidden_size"}, "missing required field(s) hidden_size"),
])
def test_unsupported_config_is_named(cfg, message):
    with pytest.raises(UserError, match=None) as err:
        parse_arch(cfg, where="m/config.json")
    assert message in str(err.value) and "m/config.json" in str(err.value)


def test_arch_fields():
    llama = parse_arch(TINY_CONFIGS["llama"])
    assert (llama.family, llama.rope_theta, llama.rope_scaling_factor, llama.qkv_bias) == ("llama", 5e5, 8.0, False)
    qwen = parse_arch(TINY_CONFIGS["qwen2-odd-vocab"])
    assert (qwen.qkv_bias, qwen.tie_word_embeddings, qwen.kv_channels) == (True, True, 16)
    assert qwen.padded_vocab_size(2) == 252 and qwen.padded_vocab_size(1) == 251


def test_flex_attention_path_equals_per_document_sdpa():
    """The CUDA path without flash-attn (one FlexAttention call, document-causal block mask) against
    the per-document SDPA loop, on CPU in FlexAttention's eager mode: packed documents, GQA."""
    import warnings
    from types import SimpleNamespace

    from oreal_mega.models.attention import CausalAttention

    attention = CausalAttention.__new__(CausalAttention)  # only the kernels are under test
    attention.softmax_scale, attention.dropout = 0.25, 0.0
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 1, 9, 3]
    q = torch.randn(sum(lengths), 4, 16, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(sum(lengths), 2, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    params = packed_seq_params(lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        flex = attention._flex(q, k, v, params.cu_seqlens_q, compiled=False)
    loop = attention._packed(q, k, v, SimpleNamespace(cu_seqlens_q=params.cu_seqlens_q), 0.0)
    assert torch.allclose(flex, loop, rtol=1e-10, atol=1e-12)


def test_cuda_fusions_follow_the_installed_kernels_and_say_what_is_missing(monkeypatch, capsys):
    """Logic test (no GPU here): with CUDA, the jit-fused SwiGLU / bias-dropout are on and the fusions
    whose kernels are not importable stay off, named once; without CUDA everything is off."""
    import importlib.util

    from oreal_mega.models import builder

    assert not any(builder.cuda_fusions().values()) or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    installed = {"fused_rotary_positional_embedding"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    monkeypatch.setattr(builder, "_reported_missing", False)
    flags = builder.cuda_fusions()
    assert flags == {"bias_activation_fusion": True, "bias_dropout_fusion": True, "apply_rope_fusion": True,
                     "gradient_accumulation_fusion": False}
    builder.cuda_fusions()
    out = capsys.readouterr().out.splitlines()
    assert out == ["megatron fusions off, their kernels are not installed: gradient_accumulation_fusion "
                   "(needs transformer_engine or fused_weight_gradient_mlp_cuda)"]
