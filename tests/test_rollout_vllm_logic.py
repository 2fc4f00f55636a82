"""LOGIC TESTS of the vLLM engine's GPU-only paths (sleep, two-phase wake, CUDA defaults): no GPU
is available, so CUDA is faked as present and `vllm.LLM` is replaced by a recorder. They check
what the engine asks of vLLM and in which order, not that vLLM on a GPU does it."""
import types

import pytest
import torch

from oreal_mega.rollout import RolloutEngineError, SamplingConfig
from oreal_mega.rollout import vllm_engine


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
        """One one-token completion per request."""
        self.calls.append("generate")
        completion = types.SimpleNamespace(token_ids=[3], text="x", finish_reason="length",
                                           logprobs=[{3: types.SimpleNamespace(logprob=-0.5)}])
        return [types.SimpleNamespace(outputs=[completion]) for _ in requests]


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA 'present', vLLM's LLM recording into `calls`, empty_cache recorded too."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    fake_vllm = types.SimpleNamespace(LLM=lambda **args: RecordingLLM(calls, **args))
    monkeypatch.setattr(vllm_engine, "_import_vllm", lambda cpu_kv_cache_gib: fake_vllm)
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
                     "start_weight_update", "update_weights", "finish_weight_update",
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
