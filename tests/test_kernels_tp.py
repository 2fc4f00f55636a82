"""Vocab parallelism: TP=2 (two gloo processes, uneven vocab shards) against TP=1 and float64."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from oreal_mega.kernels import fused_oreal_loss, token_logprobs
from test_kernels_helpers import make_inputs, reference_logprobs_and_grads, rel_err

TOKENS, HIDDEN, VOCAB, TEMPERATURE = 41, 16, 301, 0.9
SPLIT = 151  # rank 0 holds ids [0, 151), rank 1 [151, 301)


def _shard(weight, rank):
    return weight[:SPLIT] if rank == 0 else weight[SPLIT:]


def _worker(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        group = dist.new_group([0, 1])
        hidden, weight, labels = make_inputs(TOKENS, HIDDEN, VOCAB, torch.float32, seed=31, scale=2.0)
        gen = torch.Generator().manual_seed(32)
        coef_logp, coef_entropy, ref_noise = torch.randn(3, TOKENS, generator=gen)
        rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, VOCAB)

        def logprobs(w, tp_group):
            h, w = hidden.clone().requires_grad_(), w.clone().requires_grad_()
            logp, entropy = token_logprobs(h, w, labels, temperature=TEMPERATURE, tp_group=tp_group,
                                           return_entropy=True, chunk_tokens=16)
            ((coef_logp * logp).sum() + (coef_entropy * entropy).sum()).backward()
            return logp.detach(), entropy.detach(), h.grad, w.grad

        single = logprobs(weight, None)
        sharded = logprobs(_shard(weight, rank), group)
        reference = reference_logprobs_and_grads(hidden, weight, labels, coef_logp, coef_entropy, TEMPERATURE)
        for name, tp2, tp1, ref in zip(("logp", "entropy", "grad_hidden"), sharded, single, reference):
            assert rel_err(tp2, tp1) <= 1e-5 and rel_err(tp2, ref) <= 1e-5, f"rank {rank} {name}"
        assert rel_err(sharded[3], single[3][rows]) <= 1e-5 and rel_err(sharded[3], reference[3][rows]) <= 1e-5

        def loss(w, tp_group):
            h, w = hidden.clone().requires_grad_(), w.clone().requires_grad_()
            value, diag = fused_oreal_loss(h, w, labels, coef_logp=coef_logp, ref_logp=single[0] + 0.2 * ref_noise,
                                           kl_coef=0.05, kl_type="k3", temperature=TEMPERATURE, tp_group=tp_group,
                                           chunk_tokens=16)
            value.backward()
            return value.detach(), diag, h.grad, w.grad

        value1, diag1, grad_h1, grad_w1 = loss(weight, None)
        value2, diag2, grad_h2, grad_w2 = loss(_shard(weight, rank), group)
        assert rel_err(value2, value1) <= 1e-5
        for name, tp2, tp1 in zip(diag1._fields, diag2, diag1):
            assert rel_err(tp2, tp1) <= 1e-5, f"rank {rank} {name}: {rel_err(tp2, tp1):.1e}"
        assert rel_err(grad_h2, grad_h1) <= 1e-5 and rel_err(grad_w2, grad_w1[rows]) <= 1e-5
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_vocab_parallel_tp2_matches_tp1(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "gloo_init"),), nprocs=2, join=True)
