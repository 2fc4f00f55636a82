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


# Documents that end inside, exactly at and just past 128-token mask blocks, tiny ones, an empty one,
# and a stream whose length is not a multiple of the block.
PACKINGS = [(5, 1, 9, 3), (128, 128), (127, 1, 129, 256, 3), (5, 1, 200, 3, 127, 129, 1, 140), (0, 200, 0, 57),
            (1,) * 20 + (300,)]


def _bare_attention():
    from oreal_mega.models.attention import CausalAttention

    attention = CausalAttention.__new__(CausalAttention)  # only the kernels are under test
    attention.softmax_scale, attention.dropout = 0.25, 0.0
    return attention


def _qkv(lengths, dtype, requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    shapes = [(sum(lengths), 4, 16), (sum(lengths), 2, 16), (sum(lengths), 2, 16)]  # GQA
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_(requires_grad) for s in shapes]


@pytest.mark.parametrize("lengths", PACKINGS)
def test_flex_attention_path_equals_per_document_sdpa(monkeypatch, lengths):
    """The CUDA path without flash-attn (one FlexAttention call, document-causal block mask) against
    the per-document SDPA loop, outputs and gradients, on CPU in FlexAttention's eager mode (which
    applies the mask function to every pair; its CPU guard against backward is lifted here)."""
    import warnings

    import torch.nn.attention.flex_attention as flex

    monkeypatch.setattr(flex, "_validate_device", lambda *tensors: None)
    attention = _bare_attention()
    q, k, v = _qkv(lengths, torch.float64, requires_grad=True)
    params = packed_seq_params(list(lengths))
    out_grad = torch.randn_like(q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        flex_out = attention._flex(q, k, v, params.seq_lengths, compiled=False)
    loop_out = attention._packed(q, k, v, params, 0.0)
    assert torch.allclose(flex_out, loop_out, rtol=1e-10, atol=1e-12)
    for got, expected in zip(torch.autograd.grad(flex_out, (q, k, v), out_grad),
                             torch.autograd.grad(loop_out, (q, k, v), out_grad)):
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_flex_block_mask_is_the_one_create_block_mask_finds_without_a_token_grid():
    """Eager FlexAttention ignores the block lists, the compiled kernels skip the blocks not listed and
    do not evaluate the mask in full ones: the block-level mask must list exactly the blocks of torch's
    own builder, which evaluates the mask on all T×T pairs. No tensor of the new one reaches T×T
    elements (every aten op's outputs are watched; torch's builder, the control, does)."""
    from torch.nn.attention.flex_attention import create_block_mask
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from oreal_mega.models.attention import document_causal_mask

    class LargestOutput(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.numel = max([self.numel] + [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)])
            return out

    fields = ["kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
              "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"]
    for lengths in PACKINGS + [(1000, 3, 1500, 1, 1593)]:
        length = sum(lengths)
        document = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        with LargestOutput() as theirs:
            expected = create_block_mask(lambda b, h, q, kv: (document[q] == document[kv]) & (q >= kv),
                                         None, None, length, length, device="cpu")
        document_causal_mask.cache_clear()
        with LargestOutput() as ours:
            got = document_causal_mask(lengths, torch.device("cpu"))
        for name in fields:
            assert torch.equal(getattr(got, name), getattr(expected, name)), (lengths, name)
        assert (got.seq_lengths, got.BLOCK_SIZE) == (expected.seq_lengths, expected.BLOCK_SIZE)
        blocks = -(-length // 128)
        assert ours.numel <= max(length, blocks * (blocks + 1)) < length ** 2 <= theirs.numel, (lengths, ours.numel)


def test_compiled_flex_attention_on_cpu_follows_the_block_lists():
    """The compiled kernel (CPU inductor here; it skips unlisted blocks and does not evaluate the mask
    in full ones) against the per-document loop, forward only (no compiled backward on CPU); new
    packings, of new lengths, reuse the one compiled graph."""
    from torch._dynamo.utils import counters

    attention = _bare_attention()
    graphs = counters["stats"]["unique_graphs"]
    for lengths in PACKINGS[2:5]:
        q, k, v = _qkv(lengths, torch.float32)
        params = packed_seq_params(list(lengths))
        flex_out = attention._flex(q, k, v, params.seq_lengths, compiled=True)
        assert torch.allclose(flex_out, attention._packed(q, k, v, params, 0.0), rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] - graphs <= 1


def test_flex_mask_is_built_once_per_packing_for_all_layers_recompute_and_micro_batches(megatron_world,
                                                                                       monkeypatch):
    """A real model with full activation recompute through the pipeline schedule, with the FlexAttention
    path routed on CPU (eager): micro-batches 1 and 3 share a packing. Gradients as on the per-document
    path."""
    import warnings

    import torch.nn.attention.flex_attention as flex

    from oreal_mega.kernels import token_logprobs
    from oreal_mega.models import attention
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.pipeline import forward_backward, pack

    arch = parse_arch(TINY_CONFIGS["qwen2"])
    gen = torch.Generator().manual_seed(2)
    packings = [[130, 20, 60], [7, 250], [130, 20, 60]]
    mbs = [pack([torch.randint(0, arch.vocab_size, (n,), generator=gen) for n in lengths], 260,
                {"labels": [torch.randint(0, arch.vocab_size, (n,), generator=gen) for n in lengths]},
                pad_values={"labels": -100}) for lengths in packings]

    def loss_fn(hidden, model, mb):
        return -token_logprobs(hidden, model.lm_head_weight(), mb.fields["labels"]).sum(), {}

    def gradients(chunks):
        for p in chunks[0].parameters():
            p.grad = None
        forward_backward(chunks, mbs, loss_fn)
        return {name: p.grad.clone() for name, p in chunks[0].named_parameters()}

    chunks = build_model(arch, recompute=True)
    expected = gradients(chunks)
    monkeypatch.setattr(flex, "_validate_device", lambda *tensors: None)
    monkeypatch.setattr(attention.CausalAttention, "_packed", lambda self, query, key, value, params, dropout:
                        self._flex(query, key, value, attention.document_lengths(params), compiled=False))
    attention.document_causal_mask.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = gradients(chunks)
    calls = arch.num_layers * 2 * len(mbs)  # each layer's forward, then its recompute in the backward
    assert attention.document_causal_mask.cache_info()[:2] == (calls - 2, 2)  # (hits, misses)
    for name, grad in expected.items():
        assert ((got[name] - grad).norm() / grad.norm()).item() <= 1e-5, name


def test_cuda_fusions_follow_the_installed_kernels_and_say_what_is_missing(monkeypatch, capsys):
    """Logic test (no GPU here): with CUDA, the jit-fused SwiGLU / bias-dropout are on and the others follow
    the modules megatron-core imports for them with the local spec: TransformerEngine gives the fused
    RoPE but not gradient_accumulation_fusion (apex's kernel); the missing one is named once, in one
    line; without CUDA everything is off."""
    import importlib.util

    from oreal_mega.models import builder

    assert not any(builder.cuda_fusions().values()) or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    installed = {"transformer_engine"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    monkeypatch.setattr(builder, "_reported_missing", False)
    flags = builder.cuda_fusions()
    assert flags == {"bias_activation_fusion": True, "bias_dropout_fusion": True, "apply_rope_fusion": True,
                     "gradient_accumulation_fusion": False}
    builder.cuda_fusions()
    out = capsys.readouterr().out.splitlines()
    assert out == ["megatron fusions off, their kernels are not installed: gradient_accumulation_fusion "
                   "(needs fused_weight_gradient_mlp_cuda from apex built with --cuda_ext)"]
    installed = {"fused_weight_gradient_mlp_cuda", "fused_rotary_positional_embedding"}  # apex, no TE
    flags = builder.cuda_fusions()
    assert flags["gradient_accumulation_fusion"] and not flags["apply_rope_fusion"]
    assert capsys.readouterr().out == ""  # said once per process


@pytest.mark.parametrize("flag, module, message", [
    ("gradient_accumulation_fusion", "fused_weight_gradient_mlp_cuda",
     "fused_weight_gradient_mlp_cuda module is not found"),
    ("apply_rope_fusion", "transformer_engine", "apply_rope_fusion is not available. Please install TE"),
])
def test_megatron_refuses_a_fusion_without_the_module_the_table_names(megatron_world, monkeypatch, flag, module,
                                                                      message):
    """The table checked against megatron-core itself: `module` is not installed here, and megatron
    refuses `flag` when the model is built."""
    import importlib.util

    from oreal_mega.models import builder

    assert importlib.util.find_spec(module) is None
    monkeypatch.setattr(builder, "cuda_fusions", lambda: {name: name == flag for name in builder._FUSION_KERNELS})
    with pytest.raises((RuntimeError, ValueError), match=message):
        builder.build_model(parse_arch(TINY_CONFIGS["qwen2"]))
