"""megatron DDP's overlapped gradient reduction as wrap_ddp sets it up: on with NCCL only, and with the
fused loss writing the LM head's gradient straight into main_grad (in-process, one gloo rank; the
DP = 2 and PP = 2 runs are in test_oreal_invariance.py)."""
import pytest
import torch
import torch.distributed as dist

from oreal_mega.kernels import fused_oreal_loss
from oreal_mega.models.hf_config import parse_arch
from oreal_mega.models.pipeline import forward_backward, pack
from oreal_mega.testing.layouts import TINY_CONFIGS


def test_overlap_follows_the_backend(megatron_world, monkeypatch):
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp

    arch = parse_arch(TINY_CONFIGS["qwen2"])
    [gloo] = wrap_ddp(build_model(arch))
    assert not gloo.ddp_config.overlap_grad_reduce and gloo.config.no_sync_func is None
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    [nccl] = wrap_ddp(build_model(arch))
    assert nccl.ddp_config.overlap_grad_reduce and nccl.config.no_sync_func == nccl.no_sync


def _micro_batches(count: int, gen: torch.Generator, vocab: int):
    out = []
    for _ in range(count):
        seqs = [torch.randint(0, vocab, (int(n),), generator=gen) for n in torch.randint(3, 12, (3,), generator=gen)]
        labels = [torch.randint(0, vocab, (len(s),), generator=gen) for s in seqs]
        out.append(pack(seqs, 40, {"labels": labels}, pad_values={"labels": -100}))
    return out


def _fused_loss(hidden, model, mb):
    loss, _ = fused_oreal_loss(hidden, model.lm_head_weight(), mb.fields["labels"], coef_logp=-0.01,
                               weight_grad_into=model.lm_head_main_grad())
    return loss, {}


@pytest.mark.parametrize("arch_name", ["qwen2", "qwen2-tied"])
def test_overlapped_reduction_gives_the_gradients_of_the_plain_one(megatron_world, arch_name):
    """Three steps of 2, 3 and 1 micro-batches through the real schedule and fused loss. With overlap,
    from the second step on (megatron's first reduces at finish_grad_sync) every bucket's reduction
    must have been issued during the backward: for the bucket of the LM head, whose gradient bypasses
    autograd, only because the pipeline marks it ready; for every bucket, only once the last
    micro-batch has contributed (the schedule's no_sync)."""
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import finalize_grads, wrap_ddp, zero_grads

    arch = parse_arch(TINY_CONFIGS[arch_name])
    plain, overlapped = build_model(arch), build_model(arch)
    overlapped[0].load_state_dict(plain[0].state_dict())
    plain = wrap_ddp(plain, overlap_grad_reduce=False)
    overlapped = wrap_ddp(overlapped, overlap_grad_reduce=True, bucket_size=20_000)
    bucket_groups = overlapped[0].bucket_groups
    assert len(bucket_groups) >= 3
    gen = torch.Generator().manual_seed(1)
    for step, count in enumerate([2, 3, 1]):
        mbs = _micro_batches(count, gen, arch.vocab_size)
        grads = []
        for chunks in (plain, overlapped):
            zero_grads(chunks)
            forward_backward(chunks, mbs, _fused_loss)
            if chunks is overlapped:
                issued = [group.grad_reduce_handle is not None for group in bucket_groups]
                assert all(issued) if step > 0 else not any(issued), issued
            finalize_grads(chunks)
            grads.append({name: p.main_grad.clone() for name, p in chunks[0].module.named_parameters()})
        for name, grad in grads[0].items():
            assert grad.abs().sum() > 0, name
            assert torch.equal(grads[1][name], grad), (step, name)
