"""The parity contract's maths without an engine: log-prob statistics, dtype-aware levels, weight
fingerprints (streamed, fused, rounded as a low-precision engine rounds them) and the decision
between wrong weights, unexplained mismatch and drift; the config keys that set the levels."""
import json

import pytest
import torch

from oreal_mega.config import ConfigError, load_config
from oreal_mega.errors import UserError
from oreal_mega.rollout.parity import (
    FingerprintAccumulator,
    ParityLevels,
    PolicyParityError,
    SentFingerprints,
    check_parity,
    compare_logprobs,
    judge_parity,
    probe_input,
    relative_difference,
    trainer_fingerprints,
    weight_differences,
    worst_verdict,
)


def test_compare_logprobs_by_hand():
    engine = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5])]
    trainer = [torch.tensor([-1.0, -2.25]), torch.tensor([-0.375])]
    stats = compare_logprobs(engine, trainer)
    assert stats.max_abs == 0.25 and stats.tokens == 3
    assert stats.mean_abs == pytest.approx((0 + 0.25 + 0.125) / 3, abs=1e-15)
    assert stats.p99_abs == 0.25  # fewer than 100 tokens: the max
    assert stats.worst[0] == (0, 1, -2.0, -2.25)
    assert compare_logprobs([torch.tensor([float("nan")])], [torch.tensor([0.0])]).max_abs == float("inf")
    with pytest.raises(ValueError, match="probe sequence 0"):
        compare_logprobs([torch.zeros(2)], [torch.zeros(3)])


def test_p99_is_an_observed_value_below_the_max():
    diffs = torch.arange(1000, dtype=torch.float64) / 1000  # |Δ| = 0.000, 0.001, ..., 0.999
    stats = compare_logprobs([diffs], [torch.zeros(1000, dtype=torch.float64)])
    assert stats.p99_abs == 0.99 and stats.max_abs == 0.999
    assert stats.mean_abs == pytest.approx(0.4995)


def test_levels_follow_the_unit_roundoff_of_the_dtype():
    bf16, fp16, fp32 = (ParityLevels.for_dtype(d) for d in ("bfloat16", "float16", "float32"))
    assert (bf16.warn_mean, bf16.stop_mean) == (16 * 2 ** -8, 128 * 2 ** -8) == (0.0625, 0.5)
    assert (fp16.warn_mean, fp16.stop_mean) == (16 * 2 ** -11, 128 * 2 ** -11)
    assert (fp32.warn_mean, fp32.stop_mean) == (2 ** -14, 2 ** -10)
    for levels, u in ((bf16, 2 ** -8), (fp16, 2 ** -11), (fp32, 2 ** -24)):
        assert levels.fingerprint_tolerance == 4 * u + 1e-5
    assert bf16.fingerprint_tolerance == pytest.approx(1.56e-2, rel=1e-2)
    assert ParityLevels.for_dtype("bfloat16", stop_mean=0.25).stop_mean == 0.25
    assert ParityLevels.for_dtype("bfloat16", stop_mean=0.25).warn_mean == 0.0625
    with pytest.raises(ValueError, match="'bf16'"):
        ParityLevels.for_dtype("bf16")


def _layer(generator, layer: int, bias: bool = True) -> list[tuple[str, torch.Tensor]]:
    prefix = f"model.layers.{layer}."
    tensors = [(prefix + "input_layernorm.weight", torch.rand(8, generator=generator) + 0.5)]
    for part, rows in (("q", 8), ("k", 4), ("v", 4)):
        tensors.append((f"{prefix}self_attn.{part}_proj.weight", torch.randn(rows, 8, generator=generator)))
        if bias:
            tensors.append((f"{prefix}self_attn.{part}_proj.bias", torch.randn(rows, generator=generator)))
    tensors += [(prefix + "self_attn.o_proj.weight", torch.randn(8, 8, generator=generator)),
                (prefix + "mlp.up_proj.weight", torch.randn(16, 8, generator=generator)),
                (prefix + "mlp.down_proj.weight", torch.randn(8, 16, generator=generator))]
    return tensors


def _model(seed: int = 0, layers: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = [("model.embed_tokens.weight", torch.randn(32, 8, generator=generator))]
    for layer in range(layers):
        tensors += _layer(generator, layer)
    return dict(tensors + [("model.norm.weight", torch.ones(8)), ("lm_head.weight", torch.randn(32, 8))])


def test_the_probe_input_is_exact_in_every_dtype():
    probe = probe_input(64)
    assert set(probe.unique().tolist()) == {-1.0, 1.0}
    for dtype in (torch.bfloat16, torch.float16):
        assert torch.equal(probe.to(dtype).double(), probe)
    assert torch.equal(probe, probe_input(64)) and not torch.equal(probe[:, :32], probe_input(32))


def test_streamed_fingerprints_equal_those_of_the_full_dict_bias_before_or_after_its_weight():
    tensors = _model()
    reordered = sorted(tensors.items(), key=lambda item: (not item[0].endswith(".bias"), item[0]))
    assert reordered[0][0].endswith(".bias")  # every bias streams before its weight
    sent = SentFingerprints()
    passed = list(sent.watch(iter(reordered)))
    assert [name for name, _ in passed] == [name for name, _ in reordered]
    assert all(a is b for (_, a), (_, b) in zip(passed, reordered))  # the sync gets the tensors themselves
    full = trainer_fingerprints(tensors.items())
    assert sent.result().keys() == full.keys()
    for group in full:
        assert sent.result()[group] == pytest.approx(full[group], rel=1e-12)
    assert set(full) == {"model.embed_tokens.weight", "layers.0", "layers.1", "layers.2", "model.norm.weight",
                         "lm_head.weight"}


def test_fingerprints_do_not_depend_on_fusion():
    """A fused q/k/v applied to the probe gives the same (Σy, Σ|y|, Σy²) as the three parts."""
    tensors = dict(_layer(torch.Generator().manual_seed(0), 0))
    attn = "model.layers.0.self_attn."
    names = [f"{attn}{part}_proj" for part in "qkv"]
    separate = trainer_fingerprints((name, tensors[name]) for name in tensors if name.startswith(tuple(names)))
    fused = (probe_input(8) @ torch.cat([tensors[n + ".weight"] for n in names]).double().T
             + torch.cat([tensors[n + ".bias"] for n in names]).double())
    expected = (float(fused.sum()), float(fused.abs().sum()), float(fused.square().sum()))
    assert separate["layers.0"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_engine_rounding_stays_within_the_tolerance(dtype):
    """An engine in `dtype` holds the weights the trainer sent (already in `dtype`) and rounds each
    linear output, then again when adding the bias: its fingerprints stay within the tolerance,
    and a layer scaled by 1.1 does not."""
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(3)
    sent = {name: (t * 0.05).to(torch_dtype) for name, t in _model_wide(generator).items()}

    def engine_fingerprints(state):
        rounded = {}
        for name, tensor in state.items():
            if name.endswith("proj.weight"):
                output = (probe_input(tensor.shape[1]).to(torch_dtype).float() @ tensor.float().T).to(torch_dtype)
                bias = state.get(name.removesuffix("weight") + "bias")
                rounded[name] = output if bias is None else output + bias  # a second rounding
            elif not name.endswith("proj.bias"):
                rounded[name] = tensor
        accumulator = FingerprintAccumulator()
        for name, values in rounded.items():
            accumulator.add(name, values)
        return accumulator.result()

    levels = ParityLevels.for_dtype(dtype)
    trainer = trainer_fingerprints(sent.items())
    differences = dict(weight_differences(trainer, engine_fingerprints(sent)))
    assert max(differences.values()) <= levels.fingerprint_tolerance
    assert max(differences.values()) > 0  # the engine's rounding is visible, just small
    scaled = dict(sent, **{"model.layers.1.mlp.up_proj.weight": sent["model.layers.1.mlp.up_proj.weight"] * 1.1})
    differing = [group for group, diff in weight_differences(trainer, engine_fingerprints(scaled))
                 if diff > levels.fingerprint_tolerance]
    assert differing == ["layers.1"]


def _model_wide(generator) -> dict[str, torch.Tensor]:
    """Two layers at a width where the GEMMs accumulate over hundreds of inputs."""
    tensors = {}
    for layer in range(2):
        prefix = f"model.layers.{layer}."
        tensors |= {prefix + "self_attn.q_proj.weight": torch.randn(256, 256, generator=generator),
                    prefix + "self_attn.q_proj.bias": torch.randn(256, generator=generator),
                    prefix + "mlp.up_proj.weight": torch.randn(512, 256, generator=generator),
                    prefix + "mlp.down_proj.weight": torch.randn(256, 512, generator=generator),
                    prefix + "post_attention_layernorm.weight": torch.rand(256, generator=generator) + 0.5}
    return tensors


def test_relative_difference_sees_scale_shift_and_nan():
    base = (10.0, 40.0, 100.0)
    assert relative_difference(base, base) == 0.0
    assert relative_difference(base, (10.0, 40.0, 125.0)) == 0.25
    assert relative_difference(base, (14.0, 40.0, 100.0)) == 0.1  # a shift: Σy moved by 10% of Σ|y|
    assert relative_difference(base, (float("nan"), 40.0, 100.0)) == float("inf")


def _probe_logprobs(seed: int, tokens: int = 300) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [-torch.rand(tokens // 3, generator=generator, dtype=torch.float64) * 5 for _ in range(3)]


def _noisy(logprobs: list[torch.Tensor], std: float, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [lp + std * torch.randn(lp.shape, generator=generator, dtype=torch.float64) for lp in logprobs]


def test_wrong_weights_stop_naming_the_group_even_when_the_logprobs_agree():
    sent = _model()
    received = dict(sent, **{"model.layers.1.mlp.up_proj.weight": sent["model.layers.1.mlp.up_proj.weight"] * 1.5})
    logprobs = _probe_logprobs(0)
    for dtype in ("float32", "bfloat16"):
        with pytest.raises(PolicyParityError, match=r"weights differ from the trainer's in layers\.1 ") as caught:
            check_parity(logprobs, logprobs, ParityLevels.for_dtype(dtype), trainer_fingerprints(sent.items()),
                         trainer_fingerprints(received.items()))
        assert "layers.0" not in str(caught.value) and "layers.2" not in str(caught.value)


def test_bf16_sized_noise_is_not_a_stop_and_larger_drift_only_warns():
    fingerprints = trainer_fingerprints(_model().items())
    levels = ParityLevels.for_dtype("bfloat16")
    engine = _probe_logprobs(0)
    bf16_noise = check_parity(engine, _noisy(engine, 0.02), levels, fingerprints, fingerprints)
    assert bf16_noise.outcome == "ok" and bf16_noise.largest_weight_difference == 0.0
    assert bf16_noise.stats.max_abs > 0.05  # the old max-based threshold would have stopped here
    drift = check_parity(engine, _noisy(engine, 0.1), levels, fingerprints, fingerprints)
    assert drift.outcome == "drift" and not drift.stops
    assert set(drift.metrics()) == {"parity_mean_abs", "parity_p99_abs", "parity_max_abs", "parity_weight_rel_diff"}
    message = drift.message()
    assert "\n" not in message and "numerical drift" in message and "training continues" in message
    assert f"mean |Δlogp| {drift.stats.mean_abs:.3e}, p99 {drift.stats.p99_abs:.3e}" in message


def test_a_gross_mismatch_with_matching_weights_stops_saying_no_group_differs():
    fingerprints = trainer_fingerprints(_model().items())
    engine = _probe_logprobs(0)
    shuffled = [lp[torch.randperm(len(lp), generator=torch.Generator().manual_seed(2))] for lp in engine]
    with pytest.raises(PolicyParityError, match="no parameter group's weight fingerprints differ "
                                                r"\(largest relative difference 0.00e\+00"):
        check_parity(engine, shuffled, ParityLevels.for_dtype("bfloat16"), fingerprints, fingerprints)
    with pytest.raises(PolicyParityError, match="no weight fingerprints were compared"):
        check_parity(engine, shuffled, ParityLevels.for_dtype("bfloat16"))


def test_every_rank_acts_on_the_most_severe_verdict():
    fingerprints = trainer_fingerprints(_model().items())
    levels = ParityLevels.for_dtype("bfloat16")
    engine = _probe_logprobs(0)
    ok = judge_parity(engine, _noisy(engine, 0.02), levels, fingerprints, fingerprints)
    drift = judge_parity(engine, _noisy(engine, 0.1), levels, fingerprints, fingerprints)
    wrong = judge_parity(engine, engine, levels, fingerprints, {**fingerprints, "layers.0": (0.0, 0.0, 0.0)})
    assert worst_verdict([ok, drift, ok]) == (1, drift)
    assert worst_verdict([drift, ok, wrong]) == (2, wrong)


def _train_config(tmp_path, **rollout):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4}))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"question": "1+1?", "gold_answer": "2"}) + "\n")
    path = tmp_path / "rl.yaml"
    path.write_text(json.dumps({"model": {"path": str(model)}, "data": {"prompts": str(prompts)},
                                "rollout": rollout}))
    return path


def test_parity_config_keys_are_checked_and_the_old_threshold_is_refused(tmp_path):
    from oreal_mega.trainer.config import TrainConfig, validate

    with pytest.raises(ConfigError, match=r"key 'rollout.parity_threshold' was removed: .*parity_warn_mean, "
                                          "parity_stop_mean"):
        load_config(TrainConfig, _train_config(tmp_path, parity_threshold=0.05))
    validate(load_config(TrainConfig, _train_config(tmp_path, parity_stop_mean=1e-3)), "rl.yaml")
    for rollout, message in [({"parity_warn_mean": 0}, "rollout.parity_warn_mean in rl.yaml: 0.0 is not a positive"),
                             ({"parity_fingerprint_tolerance": -1}, "rollout.parity_fingerprint_tolerance in rl.yaml"),
                             ({"parity_probe_prompts": 0}, "rollout.parity_probe_prompts in rl.yaml: 0 is not ≥ 1"),
                             ({"parity_warn_mean": 0.5, "parity_stop_mean": 0.1},
                              "rollout.parity_warn_mean in rl.yaml: 0.5 is above rollout.parity_stop_mean 0.1")]:
        with pytest.raises(UserError, match=message.replace(".", r"\.")):
            validate(load_config(TrainConfig, _train_config(tmp_path, **rollout)), "rl.yaml")
