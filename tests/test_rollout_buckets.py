"""Bucketing, sampling-config validation and prompt parsing (no vLLM needed; parity maths: test_parity.py)."""
import json

import pytest
import torch

from oreal_mega.errors import UserError
from oreal_mega.rollout.base import SamplingConfig
from oreal_mega.rollout.buckets import bucketize, layer_group
from oreal_mega.rollout.prompts import read_prompts


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
