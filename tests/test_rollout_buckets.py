"""Bucketing, sampling-config validation, parity maths and prompt parsing (no vLLM needed)."""
import json

import pytest
import torch

from oreal_mega.errors import UserError
from oreal_mega.rollout.base import SamplingConfig
from oreal_mega.rollout.buckets import bucketize, layer_group
from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.rollout.parity import (
    PolicyParityError,
    check_parity,
    compare_logprobs,
    probe_input,
    suspect_groups,
    trainer_fingerprints,
)


def _layer_tensors(layer: int, numel: int):
    return [(f"model.layers.{layer}.self_attn.{part}_proj.weight", torch.zeros(numel))
            for part in ("q", "k", "v")]


def test_layer_group_names():
    assert layer_group("model.layers.12.mlp.gate_proj.weight") == "layers.12"
    assert layer_group("model.embed_tokens.weight") == "model.embed_tokens.weight"
    assert layer_group("lm_head.weight") == "lm_head.weight"


def test_buckets_close_only_at_layer_boundaries():
    stream = [("model.embed_tokens.weight", torch.zeros(100))]
    for layer in range(4):
        stream += _layer_tensors(layer, 10)  # 3 x 40 bytes per layer
    stream.append(("model.norm.weight", torch.zeros(5)))
    buckets = list(bucketize(iter(stream), bucket_bytes=250))
    assert [name for bucket in buckets for name, _ in bucket] == [name for name, _ in stream]
    for bucket in buckets:
        groups = [layer_group(name) for name, _ in bucket]
        for group in set(groups):
            if group.startswith("layers."):
                assert groups.count(group) == 3, f"layer {group} split across buckets"
        assert sum(t.nbytes for _, t in bucket) <= 400  # the embedding alone is 400 bytes
    assert len(buckets) == 4  # [embed], [L0, L1], [L2, L3], [norm] under a 250-byte limit
    assert [len(b) for b in buckets] == [1, 6, 6, 1]


def test_oversized_group_is_its_own_bucket_and_bad_size_rejected():
    buckets = list(bucketize(_layer_tensors(0, 100) + _layer_tensors(1, 1), bucket_bytes=64))
    assert [len(b) for b in buckets] == [3, 3]
    with pytest.raises(ValueError, match="bucket_bytes"):
        list(bucketize([], bucket_bytes=0))


@pytest.mark.parametrize("field,value", [("n", 0), ("top_p", 0.0), ("top_k", 0),
                                         ("max_tokens", 0), ("temperature", -1.0)])
def test_sampling_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**{field: value})


def test_compare_logprobs_by_hand():
    engine = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5])]
    trainer = [torch.tensor([-1.0, -2.25]), torch.tensor([-0.375])]
    report = compare_logprobs(engine, trainer)
    assert report.max_abs_diff == 0.25
    assert report.mean_abs_diff == pytest.approx((0 + 0.25 + 0.125) / 3, abs=1e-15)
    assert report.worst[0] == (0, 1, -2.0, -2.25)
    assert check_parity(engine, trainer, threshold=0.3).tokens == 3
    with pytest.raises(PolicyParityError, match="sequence 0 position 1"):
        check_parity(engine, trainer, threshold=0.1)
    nan_report = compare_logprobs([torch.tensor([float("nan")])], [torch.tensor([0.0])])
    assert nan_report.max_abs_diff == float("inf")


def test_fingerprints_do_not_depend_on_fusion():
    """A fused q/k/v applied to the probe gives the same (Σy, Σy²) as the three parts."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(rows, 8, generator=generator, dtype=torch.float64) for rows in (8, 4, 4))
    bias = torch.randn(16, generator=generator, dtype=torch.float64)
    separate = trainer_fingerprints([
        ("model.layers.0.attn.q_proj.weight", q), ("model.layers.0.attn.q_proj.bias", bias[:8]),
        ("model.layers.0.attn.k_proj.weight", k), ("model.layers.0.attn.k_proj.bias", bias[8:12]),
        ("model.layers.0.attn.v_proj.weight", v), ("model.layers.0.attn.v_proj.bias", bias[12:]),
    ])
    fused_output = probe_input(8) @ torch.cat([q, k, v]).T + bias
    expected = (float(fused_output.sum()), float(fused_output.square().sum()))
    assert separate["layers.0"] == pytest.approx(expected, rel=1e-12)


def test_parity_error_names_the_scaled_group():
    generator = torch.Generator().manual_seed(1)
    sent = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(6, 4, generator=generator)
            for i in range(3)}
    sent["model.norm.weight"] = torch.ones(4)
    received = dict(sent)
    received["model.layers.1.mlp.up_proj.weight"] = sent["model.layers.1.mlp.up_proj.weight"] * 1.5
    suspects = suspect_groups(trainer_fingerprints(sent.items()), trainer_fingerprints(received.items()))
    assert [group for group, _ in suspects] == ["layers.1"]
    with pytest.raises(PolicyParityError, match="worst parameter group: layers.1"):
        check_parity([torch.tensor([0.0])], [torch.tensor([1.0])], 1e-4,
                     trainer_fingerprints(sent.items()), trainer_fingerprints(received.items()))
    with pytest.raises(PolicyParityError, match="no parameter group"):
        check_parity([torch.tensor([0.0])], [torch.tensor([1.0])], 1e-4,
                     trainer_fingerprints(sent.items()), trainer_fingerprints(sent.items()))


def test_read_prompts_accepts_keys_and_names_bad_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "1+1?", "answer": 2}) + "\n\n"
                    + json.dumps({"problem": "2+2?"}) + "\n")
    records = read_prompts(good)
    assert [(r.line, r.question, r.gold) for r in records] == [(1, "1+1?", "2"), (3, "2+2?", None)]
    cases = {"{not json": "bad.jsonl:2: not valid JSON",
             "[1, 2]": "bad.jsonl:2: expected a JSON object",
             json.dumps({"text": "x"}): "bad.jsonl:2: needs a non-empty string",
             json.dumps({"prompt": "x", "gold_answer": [1]}): "bad.jsonl:2: gold answer"}
    for line, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + line + "\n")
        with pytest.raises(UserError, match=message):
            read_prompts(bad)
