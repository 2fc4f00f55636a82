"""Parking models in host memory: storages really freed, everything restored bit-exactly, and an
optimizer step after a round trip identical to one without it."""
import copy

import pytest
import torch

from oreal_mega.models.hf_config import parse_arch
from oreal_mega.models.offload import Parked
from oreal_mega.testing.layouts import TINY_CONFIGS


def _model_and_optimizer(seed: int):
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp
    from oreal_mega.trainer.optim import OptimConfig, build_optimizer

    torch.manual_seed(seed)
    chunks = wrap_ddp(build_model(parse_arch(TINY_CONFIGS["qwen2"]), dtype="float32"))
    optimizer, _ = build_optimizer(chunks, OptimConfig(lr=1e-2, warmup_steps=0), torch.float32)
    return chunks, optimizer


def _train_step(chunks, optimizer, tokens):
    from oreal_mega.models.ddp import finalize_grads, zero_grads

    zero_grads(chunks)
    logits = chunks[0](tokens[None], torch.arange(len(tokens))[None], None)
    logits.float().logsumexp(-1).mean().backward()
    finalize_grads(chunks)
    optimizer.step()


def _state(chunks, optimizer) -> list[torch.Tensor]:
    params = [p.detach().clone() for p in chunks[0].parameters()]
    moments = [v.clone() for s in optimizer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return params + moments


def test_round_trip_frees_storage_and_matches_a_run_without_parking(megatron_world):
    tokens = torch.arange(3, 40)
    chunks, optimizer = _model_and_optimizer(0)
    twin, twin_optimizer = _model_and_optimizer(0)
    parked = Parked(chunks, optimizer)  # before the optimizer has any state, as in the trainer
    with parked.loaded():
        _train_step(chunks, optimizer, tokens)  # Adam's moments appear here
    _train_step(twin, twin_optimizer, tokens)
    moments = [v for state in optimizer.optimizer.state.values() for v in state.values()
               if torch.is_tensor(v) and v.dim() > 0]
    assert moments and all(v.untyped_storage().nbytes() == 0 for v in moments)  # created in the block, parked too

    parked.load()
    held = parked.device_bytes
    param_bytes = sum(p.numel() * p.element_size() for p in chunks[0].parameters())
    assert held >= 3 * param_bytes  # parameters, Adam's two moments and the fp32 grad buffer
    parked.offload()
    assert parked.offloaded and parked.device_bytes == 0
    assert all(p.untyped_storage().nbytes() == 0 for p in chunks[0].parameters())

    with parked.loaded():
        assert parked.device_bytes == held
        for mine, theirs in zip(_state(chunks, optimizer), _state(twin, twin_optimizer)):
            assert torch.equal(mine, theirs)
        _train_step(chunks, optimizer, tokens)
    assert parked.device_bytes == 0
    _train_step(twin, twin_optimizer, tokens)

    parked.load()
    for mine, theirs in zip(_state(chunks, optimizer), _state(twin, twin_optimizer)):
        assert torch.equal(mine, theirs)


def test_parked_reference_cannot_run_and_comes_back_exactly(megatron_world):
    from oreal_mega.models.builder import build_model

    tied = copy.deepcopy(TINY_CONFIGS["qwen2"])
    tied["tie_word_embeddings"] = True
    [model] = build_model(parse_arch(tied), dtype="float32")
    model.eval()
    tokens, positions = torch.arange(5, 20)[None], torch.arange(15)[None]
    with torch.no_grad():
        before = model(tokens, positions, None)
    parked = Parked([model])
    assert parked.device_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    parked.offload()
    parked.offload()  # idempotent
    with pytest.raises(RuntimeError), torch.no_grad():
        model(tokens, positions, None)  # the weights are gone while parked
    parked.load()
    with torch.no_grad():
        assert torch.equal(model(tokens, positions, None), before)


def test_host_buffers_are_kept_and_reused_and_new_state_gets_its_own(megatron_world):
    tokens = torch.arange(3, 40)
    chunks, optimizer = _model_and_optimizer(0)
    twin, twin_optimizer = _model_and_optimizer(0)
    parked = Parked(chunks, optimizer)
    parked.offload()  # before Adam has state: the parameters only
    param_buffers = {host.data_ptr() for host in parked._host}
    param_bytes = parked.host_bytes
    with parked.loaded():
        assert parked.host_bytes == 0  # host_bytes: what is parked, though the buffers stay
        _train_step(chunks, optimizer, tokens)  # Adam's two moments appear here
    _train_step(twin, twin_optimizer, tokens)
    buffers = [host.data_ptr() for host in parked._host]
    assert param_buffers < set(buffers) and parked.host_bytes == 3 * param_bytes
    for _ in range(2):
        with parked.loaded():
            for mine, theirs in zip(_state(chunks, optimizer), _state(twin, twin_optimizer)):
                assert torch.equal(mine, theirs)
            _train_step(chunks, optimizer, tokens)
        _train_step(twin, twin_optimizer, tokens)
        assert [host.data_ptr() for host in parked._host] == buffers


def test_host_buffers_are_allocated_once_and_pinned_only_with_cuda(monkeypatch):
    """Logic test (no GPU here): the pinned allocations offload asks for, counted over three cycles."""
    real_empty, pinned = torch.empty, []

    def empty(*args, pin_memory=None, **kwargs):
        if pin_memory is not None:
            pinned.append(pin_memory)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        model = torch.nn.Linear(4, 3)
        before = [p.detach().clone() for p in model.parameters()]
        parked, pinned[:] = Parked([model]), []
        for _ in range(3):
            parked.offload()
            parked.load()
        assert pinned == [cuda, cuda]  # weight and bias, at the first offload only
        assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
