"""LOGIC TESTS of the vLLM engine's GPU-only paths (sleep, two-phase wake, CUDA defaults, seeding,
synchronised sync timing): no GPU is available, so CUDA is faked as present and `vllm.LLM` is
replaced by a recorder. They check what the engine asks of vLLM and torch and in which order, not
that vLLM on a GPU does it."""
import time
import types
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from oreal_mega.rollout import RolloutEngineError, SamplingConfig
from oreal_mega.rollout import vllm_engine
from oreal_mega.trainer import colocated_rollout
from oreal_mega.trainer.config import ModelConfig, RolloutConfig, TrainConfig


class FakeWorker:
    """What the engine's worker-side functions touch: the weight-transfer report and a model
    without tied embeddings."""
    weight_transfer_engine = types.SimpleNamespace(report=lambda: (None, []))
    model_runner = types.SimpleNamespace(get_model=lambda: types.SimpleNamespace(config=None))


class RecordingLLM:
    def __init__(self, calls: list, **engine_args):
        self.calls, self.engine_args = calls, engine_args

    def collective_rpc(self, method, kwargs=None):
        if callable(method):
            return [method(FakeWorker())]
        self.calls.append(method)
        return [None]

    def sleep(self, level):
        self.calls.append(f"sleep(level={level})")

    def wake_up(self, tags=None):
        self.calls.append(f"wake_up({tags})")
        return True

    def generate(self, requests, params, use_tqdm):
        """One one-token completion per request. Records the parameters and what vLLM's V2 runner would
        draw from numpy's global generator for a request without a seed."""
        self.calls.append("generate")
        self.params, self.numpy_draw = params, np.random.randint(2**31)
        completion = types.SimpleNamespace(token_ids=[3], text="x", finish_reason="length",
                                           logprobs=[{3: types.SimpleNamespace(logprob=-0.5)}])
        return [types.SimpleNamespace(outputs=[completion]) for _ in requests]


def _fake_vllm(monkeypatch, calls: list, cuda: bool) -> None:
    """CUDA 'present' or not, vLLM's LLM recording into `calls`, and the CUDA calls the engine makes
    (empty_cache, synchronize, current_device, the default generator's seeding and saving) recorded."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(f"cuda.manual_seed({seed})"))
    real_fork_rng = torch.random.fork_rng

    @contextmanager
    def fork_rng(devices):  # torch's, minus the CUDA generators' state, which does not exist here
        calls.append(f"fork_rng(devices={devices})")
        with real_fork_rng(devices=[]):
            yield
        calls.append("restored")

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    fake_vllm = types.SimpleNamespace(LLM=lambda **args: RecordingLLM(calls, **args))
    monkeypatch.setattr(vllm_engine, "_import_vllm", lambda cpu_kv_cache_gib: fake_vllm)


@pytest.fixture
def fake_gpu(monkeypatch):
    calls = []
    _fake_vllm(monkeypatch, calls, cuda=True)
    return calls


@pytest.fixture
def fake_cpu(monkeypatch):
    calls = []
    _fake_vllm(monkeypatch, calls, cuda=False)
    return calls


def test_gpu_defaults_to_cuda_graphs_and_sleep_mode(fake_gpu):
    engine = vllm_engine.VLLMRolloutEngine("model-dir", gpu_memory_utilization=0.4)
    args = engine.llm.engine_args
    assert args["enforce_eager"] is False and args["enable_sleep_mode"] is True
    assert args["distributed_executor_backend"] == "uni"  # no torchrun world here
    assert args["gpu_memory_utilization"] == 0.4
    eager = vllm_engine.VLLMRolloutEngine("model-dir", enforce_eager=True)
    assert eager.llm.engine_args["enforce_eager"] is True
    with pytest.raises(ValueError, match="rollout_tp=2 needs a torchrun world"):
        vllm_engine.VLLMRolloutEngine("model-dir", rollout_tp=2)


def test_two_phase_wake_order(fake_gpu):
    calls = fake_gpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir", sleep_level=1)
    calls.clear()
    engine.sleep()
    with pytest.raises(RolloutEngineError, match="weights and kv_cache are asleep"):
        engine.generate([[1, 2]], SamplingConfig())
    with pytest.raises(RolloutEngineError, match="weights are asleep"):
        engine.update_weights([])
    engine.wake(("weights",))
    with pytest.raises(RolloutEngineError, match="kv_cache are asleep"):
        engine.prompt_logprobs([[1, 2]])
    engine.update_weights([("model.norm.weight", torch.ones(4))])
    engine.wake(("kv_cache",))
    engine.wake()  # nothing is asleep any more: no call
    engine.generate([[1, 2]], SamplingConfig())
    assert calls == ["sleep(level=1)", "empty_cache", "wake_up(['weights'])",
                     "synchronize", "start_weight_update", "update_weights", "finish_weight_update", "synchronize",
                     "empty_cache", "wake_up(['kv_cache'])", "generate"]
    with pytest.raises(ValueError, match=r"unknown tags \['kv'\]"):
        engine.wake(("kv",))


def test_wake_all_at_once_and_level_2_needs_a_sync(fake_gpu):
    calls = fake_gpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir", sleep_level=2)
    calls.clear()
    engine.sleep()
    engine.wake()
    assert calls == ["sleep(level=2)", "empty_cache", "wake_up(['weights', 'kv_cache'])"]
    with pytest.raises(RolloutEngineError, match="level-2 sleep discarded the weights"):
        engine.generate([[1, 2]], SamplingConfig())
    engine.update_weights([("model.norm.weight", torch.ones(4))])
    assert engine.generate([[1, 2]], SamplingConfig())[0][0].token_ids == [3]


def test_requests_carry_no_seed_and_a_seeded_call_seeds_the_cuda_default_generator(fake_gpu):
    """No per-request seeds (they put vLLM's GPU sampler on its per-request loop): the call seeds the
    current device's default generator, and numpy's for the V2 runner, and restores both."""
    calls = fake_gpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir")
    numpy_before = np.random.get_state()[1].copy()
    calls.clear()
    engine.generate([[1, 2], [3]], SamplingConfig(n=2, seed=41))
    assert engine.llm.params.seed is None and engine.llm.params.n == 2
    assert calls == ["fork_rng(devices=[0])", "cuda.manual_seed(41)", "generate", "restored"]
    assert np.array_equal(np.random.get_state()[1], numpy_before)  # the caller's numpy stream is untouched
    first_draw = engine.llm.numpy_draw
    engine.generate([[1, 2], [3]], SamplingConfig(n=2, seed=41))
    assert engine.llm.numpy_draw == first_draw  # V2's per-request seeds: a function of the seed as well
    engine.generate([[1, 2], [3]], SamplingConfig(n=2, seed=42))
    assert engine.llm.numpy_draw != first_draw
    calls.clear()
    engine.generate([[1, 2]], SamplingConfig())  # no seed: nothing seeded or restored
    assert calls == ["generate"]
    engine.replica = 1  # a second data-parallel replica draws another stream; TP peers share theirs
    with engine._seeded(41):
        pass
    assert "cuda.manual_seed(42)" in calls


def test_the_generate_seed_is_a_function_of_the_config_seed_and_the_step(fake_gpu):
    calls = fake_gpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir")
    rollout = types.SimpleNamespace(cfg=TrainConfig(model=ModelConfig(path="m"), seed=3),
                                    tokenizer=types.SimpleNamespace(eos_token_id=0))
    seeds = []
    for step in (5, 6, 5):
        calls.clear()
        engine.generate([[1, 2]], colocated_rollout.ColocatedRollout._sampling(rollout, step))
        seeds.append(next(call for call in calls if call.startswith("cuda.manual_seed")))
    assert seeds[0] == seeds[2] != seeds[1]


def test_cpu_requests_carry_no_seed_either_and_seed_torchs_cpu_generator(fake_cpu):
    calls = fake_cpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir")
    calls.clear()
    engine.generate([[1, 2]], SamplingConfig(seed=7))
    assert engine.llm.params.seed is None
    assert calls == ["fork_rng(devices=[])", "generate", "restored"]  # torch.manual_seed(7), as before
    engine.update_weights([("model.norm.weight", torch.ones(4))])
    assert "synchronize" not in calls  # nothing to wait for on CPU


def test_sync_seconds_include_waiting_for_the_device(fake_gpu, monkeypatch):
    """The clock is read after torch.cuda.synchronize(): work the sync queued on the GPU counts."""
    waits = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: (waits.append(1), time.sleep(0.05)))
    engine = vllm_engine.VLLMRolloutEngine("model-dir")
    stats = engine.update_weights([("model.norm.weight", torch.ones(4))])
    assert len(waits) == 2 and stats.seconds >= 0.05


def test_sleep_level_0_builds_without_sleep_mode_and_refuses_to_sleep(fake_gpu, monkeypatch):
    calls = fake_gpu
    engine = vllm_engine.VLLMRolloutEngine("model-dir", sleep_level=0)
    assert engine.llm.engine_args["enable_sleep_mode"] is False
    calls.clear()
    with pytest.raises(RolloutEngineError, match="built with sleep_level=0"):
        engine.sleep()
    engine.wake()  # nothing is asleep: no call
    engine.wake(("weights",))
    engine.update_weights([("model.norm.weight", torch.ones(4))])
    assert engine.generate([[1, 2]], SamplingConfig())[0][0].token_ids == [3]
    assert not [call for call in calls if "sleep" in call or "wake" in call or call == "empty_cache"]
    with pytest.raises(ValueError, match="sleep_level=3"):
        vllm_engine.VLLMRolloutEngine("model-dir", sleep_level=3)
    built = {}
    monkeypatch.setattr(vllm_engine, "VLLMRolloutEngine", lambda path, **kwargs: built.update(kwargs))
    colocated_rollout._build_engine(TrainConfig(model=ModelConfig(path="m"), rollout=RolloutConfig(sleep_level=0)))
    assert built["sleep_level"] == 0  # rollout.sleep_level: 0 reaches the engine as 0
