"""HF ⇄ megatron weights: mappings against hand-built layouts, loading into TP / PP layouts
against float64 transformers, bit-exact exports, resharded megatron checkpoints, errors."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from oreal_mega.errors import UserError
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.testing.launch import torchrun
from oreal_mega.testing.tiny import make_tiny_model_dir
from oreal_mega.weights.layout import megatron_full_shape, pad_vocab, shard, tp_range
from oreal_mega.weights.mappings import entries, fuse, hf_shapes, split
from oreal_mega.weights.safetensors_writer import SafetensorsStreamWriter, plan_shards

WORKERS = Path(__file__).parent / "workers"
_LLAMA3_ROPE = dict(rope_theta=5e5, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=8192)
# Qwen2 untied and tied; Llama with llama3 RoPE scaling and a vocab (511) that TP=2 must pad.
# 4 layers: PP=2 × VPP=2 gives each model chunk one layer.
TINY_MODELS = {
    "qwen2": dict(arch="qwen2", tie=False, seed=1, num_hidden_layers=4),
    "qwen2-tied": dict(arch="qwen2", tie=True, seed=2, num_hidden_layers=4),
    "llama": dict(arch="llama", tie=False, seed=3, num_hidden_layers=4, vocab_size=511,
                  rope_parameters=_LLAMA3_ROPE, max_position_embeddings=16384),
}
SEQUENCES = [[5, 17, 300, 2, 44, 9, 120, 7, 3], [1, 250, 11, 12, 480, 33, 6, 6, 90, 510, 4, 77, 0, 8]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: make_tiny_model_dir(root / name, **spec) for name, spec in TINY_MODELS.items()}


@pytest.fixture(scope="module")
def reference_logits(models):
    """float64 transformers logits of SEQUENCES, one forward per sequence."""
    from transformers import AutoModelForCausalLM

    result = {}
    for name, model_dir in models.items():
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64).eval()
        with torch.no_grad():
            result[name] = torch.cat([model(torch.tensor([s])).logits[0] for s in SEQUENCES])
    return result


def _relative(got, expected):
    return ((got.double() - expected.double()).norm() / expected.double().norm()).item()


def _safetensors_dir(directory: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def _assert_bit_identical_export(export_dir: Path, source_dir: Path):
    exported, source = _safetensors_dir(export_dir), _safetensors_dir(source_dir)
    assert sorted(exported) == sorted(source)
    for name, tensor in source.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    index = json.loads((export_dir / "model.safetensors.index.json").read_text())
    assert sorted(index["weight_map"]) == sorted(source)
    for file in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (export_dir / file).is_file(), file


# --- mappings and the generic engine, against layouts built by hand -------------------------

def _arch(**changes):
    cfg = dict(architectures=["Qwen2ForCausalLM"], vocab_size=11, hidden_size=6, intermediate_size=8,
               num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=2, head_dim=3)
    return parse_arch({**cfg, **changes})


def test_qkv_fusion_follows_megatron_group_layout():
    arch = _arch()  # 8 query heads in 2 groups of 4, head_dim 3
    q = torch.arange(8).repeat_interleave(3)[:, None] * 1.0  # row value = query head index
    k = 100 + torch.arange(2).repeat_interleave(3)[:, None] * 1.0
    v = 200 + torch.arange(2).repeat_interleave(3)[:, None] * 1.0
    fused = fuse("qkv", [q, k, v], num_groups=2)[:, 0].tolist()
    by_hand = [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [100] * 3 + [200] * 3 \
        + [4] * 3 + [5] * 3 + [6] * 3 + [7] * 3 + [101] * 3 + [201] * 3
    assert fused == by_hand
    assert all(torch.equal(a, b) for a, b in zip(split("qkv", torch.tensor(by_hand)[:, None] * 1.0, arch),
                                                 [q, k, v]))


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("name", ["decoder.layers.0.self_attention.linear_qkv.weight",
                                  "decoder.layers.0.self_attention.linear_qkv.bias",
                                  "decoder.layers.0.mlp.linear_fc1.weight",
                                  "decoder.layers.0.mlp.linear_fc2.weight",
                                  "decoder.layers.0.self_attention.linear_proj.weight",
                                  "decoder.layers.0.input_layernorm.weight",
                                  "embedding.word_embeddings.weight", "output_layer.weight"])
def test_fusing_rank_slices_gives_the_megatron_shard(name, tp):
    """What each rank reads (row / column ranges of the HF tensors) fuses into exactly the
    megatron layout's slice of the fused full tensor, vocab padding (11 → 12) included."""
    arch = _arch()
    entry = next(e for e in entries(arch) if e.megatron == name)
    shapes = hf_shapes(entry, arch, megatron_full_shape(name, arch))
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(s, generator=gen) for s in shapes]
    full = fuse(entry.fusion, parts, arch.num_query_groups)
    assert all(torch.equal(a, b) for a, b in zip(split(entry.fusion, full, arch), parts))
    padded = arch.padded_vocab_size(tp)
    dim = 1 if name.endswith(("linear_fc2.weight", "linear_proj.weight")) else 0
    for rank in range(tp):
        slices = []
        for part in parts:
            if name.endswith("layernorm.weight"):
                slices.append(part)
                continue
            start, stop, pad = tp_range(name, part.shape[dim], rank, tp, padded)
            piece = part.narrow(dim, start, stop - start)
            slices.append(torch.cat([piece, piece.new_zeros(pad, *piece.shape[1:])]))
        expected = shard(name, pad_vocab(name, full, tp), rank, tp)
        assert torch.equal(fuse(entry.fusion, slices, arch.num_query_groups // tp), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stream_writer_output_reads_back_with_safetensors(tmp_path, dtype):
    gen = torch.Generator().manual_seed(0)
    tensors = {f"t{i}": torch.randn(3 + i, 5, generator=gen).to(dtype) for i in range(5)}
    tensors["bias"] = torch.randn(7, generator=gen).to(dtype)
    specs = [(n, tuple(t.shape)) for n, t in tensors.items()]
    shards = plan_shards(specs, dtype, max_shard_bytes=120 * dtype.itemsize)
    assert len(shards) > 1 and [s for shard in shards for s in shard] == specs
    for i, shard_specs in enumerate(shards):
        assert len(shard_specs) == 1 or sum(torch.Size(s).numel() for _, s in shard_specs) <= 120
        writer = SafetensorsStreamWriter(tmp_path / f"{i}.safetensors", shard_specs, dtype)
        for name, _ in shard_specs:
            writer.write(name, tensors[name])
        writer.close()
    read = _safetensors_dir(tmp_path)
    assert sorted(read) == sorted(tensors)
    assert all(torch.equal(read[n], t) for n, t in tensors.items())


# --- TP=1 in this process ---------------------------------------------------------------------

def _load(model_dir, arch=None):
    from oreal_mega.models.builder import build_model
    from oreal_mega.weights.hf_load import load_hf_weights

    arch = arch or parse_arch(read_hf_config(model_dir))
    chunks = build_model(arch)
    load_hf_weights(chunks, arch, model_dir)
    return chunks, arch


def _logits_tp1(model, arch):
    with torch.no_grad():
        return torch.cat([model(torch.tensor([s]), torch.arange(len(s))[None], None)[0, :, :arch.vocab_size]
                          for s in SEQUENCES])


def test_tp1_load_matches_transformers_and_exports_bit_identical(megatron_world, models,
                                                                 reference_logits, tmp_path):
    from transformers import AutoModelForCausalLM

    from oreal_mega.weights.hf_export import export_hf

    for name, model_dir in models.items():
        chunks, arch = _load(model_dir)
        assert _relative(_logits_tp1(chunks[0], arch), reference_logits[name]) <= 1e-5, name
        out = export_hf(chunks, arch, tmp_path / name, model_dir, max_shard_bytes=400_000)
        assert len(list(out.glob("*.safetensors"))) > 1  # several shards and an index
        _assert_bit_identical_export(out, model_dir)
        reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float64)
        with torch.no_grad():
            assert torch.equal(reloaded(torch.tensor([SEQUENCES[1]])).logits[0],
                               reference_logits[name][len(SEQUENCES[0]):])


# --- errors --------------------------------------------------------------------------------

@pytest.fixture()
def sharded_qwen2(megatron_world, models, tmp_path):
    """The tiny Qwen2 re-exported in several safetensors shards."""
    from oreal_mega.weights.hf_export import export_hf

    chunks, arch = _load(models["qwen2"])
    return export_hf(chunks, arch, tmp_path / "sharded", models["qwen2"], max_shard_bytes=400_000), arch


def _load_error(model_dir, arch) -> str:
    with pytest.raises(UserError) as err:
        _load(model_dir, arch)
    return str(err.value)


def test_missing_and_truncated_shards_are_named(sharded_qwen2):
    model_dir, arch = sharded_qwen2
    shard_file = sorted(model_dir.glob("model-00002-of-*.safetensors"))[0]
    data = shard_file.read_bytes()
    shard_file.write_bytes(data[: len(data) // 2])
    assert f"{shard_file}: unreadable or truncated" in _load_error(model_dir, arch)
    shard_file.unlink()
    assert f"missing shard file(s) {shard_file.name}" in _load_error(model_dir, arch)


def test_wrong_tensor_shape_is_named(sharded_qwen2):
    model_dir, arch = sharded_qwen2
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    name = "model.layers.1.self_attn.k_proj.weight"
    file = model_dir / index["weight_map"][name]
    tensors = load_file(file)
    tensors[name] = tensors[name][:-1]
    save_file(tensors, file, metadata={"format": "pt"})
    assert f"tensor {name} has shape [63, 128], expected [64, 128]" in _load_error(model_dir, arch)


@pytest.mark.parametrize("key, value, message", [
    ("rope_theta", 5e5, "rope_theta=500000.0 does not match the model config's 10000.0"),
    ("vocab_size", 600, "vocab_size=600 does not match the model config's 512"),
    ("tie_word_embeddings", True, "tie_word_embeddings=True does not match the model config's False"),
    ("num_key_value_heads", 4, "num_key_value_heads=4 does not match the model config's 2"),
    ("architectures", ["MistralForCausalLM"], "architectures=['MistralForCausalLM'] is not supported"),
])
def test_config_mismatch_fails_before_reading_weights(megatron_world, models, tmp_path, key, value, message):
    model_dir = tmp_path / "m"
    shutil.copytree(models["qwen2"], model_dir)
    arch = parse_arch(read_hf_config(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    config[key] = value
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "model.safetensors").unlink()  # a weight read would fail differently
    error = _load_error(model_dir, arch)
    assert message in error and str(model_dir / "config.json") in error


# --- TP / PP layouts under torchrun ----------------------------------------------------------

def _launch(models, out: Path, nproc: int, layout: list, *extra) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    torchrun(str(WORKERS / "weights_layouts.py"), nproc,
             [*layout, "--models", *models.values(), "--out", out, *extra], timeout=300)
    return out


@pytest.fixture(scope="module")
def tp2_run(models, tmp_path_factory):
    return _launch(models, tmp_path_factory.mktemp("tp2"), 2, ["--tp", 2], "--export", "--save-mcore")


@pytest.fixture(scope="module")
def pp2_run(models, tp2_run, tmp_path_factory):
    return _launch(models, tmp_path_factory.mktemp("pp2"), 2, ["--pp", 2, "--vpp", 2], "--export",
                   "--load-mcore", tp2_run)


@pytest.fixture(scope="module")
def tp2pp2_run(models, tmp_path_factory):
    return _launch(models, tmp_path_factory.mktemp("tp2pp2"), 4, ["--tp", 2, "--pp", 2])


@pytest.mark.slow
@pytest.mark.parametrize("run", ["tp2_run", "pp2_run", "tp2pp2_run"])
def test_layout_logits_match_transformers(request, run, reference_logits):
    out = request.getfixturevalue(run)
    for name, expected in reference_logits.items():
        assert _relative(torch.load(out / f"{name}-hf-logits.pt"), expected) <= 1e-5, name
        if run == "pp2_run":  # the megatron checkpoint saved at TP=2, loaded at PP=2 × VPP=2
            assert _relative(torch.load(out / f"{name}-mcore-logits.pt"), expected) <= 1e-5, name


@pytest.mark.slow
@pytest.mark.parametrize("run", ["tp2_run", "pp2_run"])
def test_layout_export_is_bit_identical_and_loads_in_transformers(request, run, models, reference_logits):
    from transformers import AutoModelForCausalLM

    out = request.getfixturevalue(run)
    for name, model_dir in models.items():
        _assert_bit_identical_export(out / f"{name}-export", model_dir)
        model = AutoModelForCausalLM.from_pretrained(str(out / f"{name}-export"), dtype=torch.float64)
        with torch.no_grad():
            assert torch.equal(model(torch.tensor([SEQUENCES[0]])).logits[0],
                               reference_logits[name][: len(SEQUENCES[0])])


@pytest.mark.slow
def test_mcore_checkpoint_from_tp2_loads_at_tp1_and_round_trips(megatron_world, tp2_run, models,
                                                                reference_logits, tmp_path):
    from oreal_mega.models.builder import build_model
    from oreal_mega.weights.model_checkpoint import load_model_checkpoint
    from oreal_mega.weights.hf_export import export_hf

    for name, model_dir in models.items():
        arch = parse_arch(read_hf_config(model_dir))
        chunks = build_model(arch)
        load_model_checkpoint(chunks, arch, tp2_run / f"{name}-mcore")
        assert _relative(_logits_tp1(chunks[0], arch), reference_logits[name]) <= 1e-5, name
        _assert_bit_identical_export(export_hf(chunks, arch, tmp_path / name, model_dir), model_dir)


@pytest.mark.slow
def test_vllm_greedy_tokens_of_tp2_export_match_transformers(tp2_run):
    from transformers import AutoModelForCausalLM

    export = tp2_run / "qwen2-export"
    prompts, max_tokens = [SEQUENCES[0][:5], SEQUENCES[1][:8]], 12
    proc = subprocess.run([sys.executable, str(WORKERS / "weights_vllm_greedy.py"), str(export),
                           str(max_tokens), *map(json.dumps, prompts)],
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("GREEDY ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    vllm_tokens = json.loads(lines[0][len("GREEDY "):])
    model = AutoModelForCausalLM.from_pretrained(str(export), dtype=torch.float32)
    for prompt, tokens in zip(prompts, vllm_tokens):
        with torch.no_grad():
            generated = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False,
                                       min_new_tokens=max_tokens)[0, len(prompt):].tolist()
        assert tokens == generated
