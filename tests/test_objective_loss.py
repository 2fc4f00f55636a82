"""Actor loss: per-token coefficients and the autograd reference against hand computations, and the
invariance of the summed loss/gradient to micro-batching and data parallelism (global normalisers)."""
import math
import os

import pytest
import torch

from oreal_mega.kernels import kl_value
import torch.distributed as dist
import torch.multiprocessing as mp

from oreal_mega.objective import (GlobalCounts, ObjectiveConfig, PackedResponses, actor_loss_reference,
                                  actor_token_coefficients, advantages, global_counts)

# Two prompts, K = 4, ±1 rewards. Prompt A: c = 1 -> A+ = 2, A− = −2/3. Prompt B: c = 3 -> A+ = 2/3, A− = −2.
# Kept: A+ (prompt 1 tok, response 2), A− (2, 3), B+ (1, 1), B− (1, 2). N+ = 3, N− = 5, N = 8, M = 4.
PROMPTS, RESPONSES = [1, 2, 1, 1], [2, 3, 1, 2]
POSITIVE = [True, False, True, False]
PASS_RATE = [0.25, 0.25, 0.75, 0.75]
OMEGA = [0, .5, 1, 0, 0, .2, .4, 1, 0, .8, 0, 1, .5]  # ω on the 13-token stream, 0 on prompt tokens
RESPONSE_TOKENS = [1, 2, 5, 6, 7, 9, 11, 12]


def hand_batch():
    rloo = advantages(torch.tensor([[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0]]), "rloo")
    advantage = [rloo[0, 0].item(), rloo[0, 1].item(), rloo[1, 0].item(), rloo[1, 3].item()]
    assert advantage == pytest.approx([2.0, -2 / 3, 2 / 3, -2.0], rel=1e-6)
    return PackedResponses.from_lengths(PROMPTS, RESPONSES, POSITIVE, advantage, PASS_RATE)


def stream(values_by_response_token):
    out = [0.0] * 13
    for position, value in zip(RESPONSE_TOKENS, values_by_response_token):
        out[position] = value
    return torch.tensor(out)


CODE_COEF = stream([-2 * .5 / 3, -2 * 1 / 3, .5 * (2 / 3) * .2 / 5, .5 * (2 / 3) * .4 / 5, .5 * (2 / 3) / 5,
                    -(2 / 3) * .8 / 3, .5 * 2 * 1 / 5, .5 * 2 * .5 / 5])
PAPER_COEF = stream([-.5 / 3, -1 / 3, .5 * .75 * .2 / 5, .5 * .75 * .4 / 5, .5 * .75 / 5,
                     -.8 / 3, .5 * .25 * 1 / 5, .5 * .25 * .5 / 5])


def test_global_counts_single_rank():
    batch = hand_batch()
    counts = global_counts(batch.response_lengths, batch.is_positive)
    assert counts == GlobalCounts(positive_tokens=3, negative_tokens=5, sequences=4) and counts.tokens == 8


@pytest.mark.parametrize("cfg, expected", [(ObjectiveConfig(), CODE_COEF), (ObjectiveConfig.paper(), PAPER_COEF)],
                         ids=["code", "paper"])
def test_coefficients_hand_case(cfg, expected):
    batch = hand_batch()
    coef, kl_coef = actor_token_coefficients(batch, torch.tensor(OMEGA), GlobalCounts(3, 5, 4), cfg)
    assert coef.dtype == torch.float32 and kl_coef.dtype == torch.float32
    assert torch.allclose(coef, expected, rtol=1e-6, atol=1e-9)
    assert torch.allclose(kl_coef, stream([0.01 / 8] * 8), rtol=1e-6, atol=0)


def test_code_mode_without_pos_mult_adv_is_plain_weighted_bc():
    coef, _ = actor_token_coefficients(hand_batch(), torch.tensor(OMEGA), GlobalCounts(3, 5, 4),
                                       ObjectiveConfig(pos_mult_adv=False))
    assert torch.allclose(coef[[1, 2, 9]], torch.tensor([-.5 / 3, -1 / 3, -.8 / 3]), rtol=1e-6)
    assert torch.allclose(coef[[5, 11]], CODE_COEF[[5, 11]], rtol=1e-6)


def kl_by_hand(lp, ref, kl_type):
    d = ref - lp
    return {"k3": math.exp(d) - d - 1, "k1": -d, "mse": d * d / 2}[kl_type]


def kl_derivative_by_hand(lp, ref, kl_type):
    d = ref - lp
    return {"k3": 1 - math.exp(d), "k1": 1.0, "mse": -d}[kl_type]


@pytest.mark.parametrize("kl_type", ["k3", "k1", "mse"])
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_reference_terms_and_gradient_hand_case(mode, kl_type):
    cfg = ObjectiveConfig(kl_type=kl_type) if mode == "code" else ObjectiveConfig.paper(kl_type=kl_type)
    expected_coef = CODE_COEF if mode == "code" else PAPER_COEF
    gen = torch.Generator().manual_seed(0)
    logp = (-torch.rand(13, generator=gen) * 3).requires_grad_()
    ref = logp.detach() + 0.3 * torch.randn(13, generator=gen)
    terms = actor_loss_reference(logp, ref, hand_batch(), torch.tensor(OMEGA), GlobalCounts(3, 5, 4), cfg)
    lp, rf, c = logp.tolist(), ref.tolist(), expected_coef.tolist()
    positive_tokens, negative_tokens = [1, 2, 9], [5, 6, 7, 11, 12]
    assert terms.bc.item() == pytest.approx(sum(c[t] * lp[t] for t in positive_tokens), rel=1e-5)
    # exp(ℓ − sg ℓ) = 1 in value: the negative term's value is the sum of its coefficients
    assert terms.neg.item() == pytest.approx(sum(c[t] for t in negative_tokens), rel=1e-5)
    kl = 0.01 / 8 * sum(kl_by_hand(lp[t], rf[t], kl_type) for t in RESPONSE_TOKENS)
    assert terms.kl.item() == pytest.approx(kl, rel=1e-5, abs=1e-12)
    assert terms.total.item() == pytest.approx(terms.bc.item() + terms.neg.item() + terms.kl.item(), rel=1e-6)
    terms.total.backward()
    grad = [c[t] + (0.01 / 8 * kl_derivative_by_hand(lp[t], rf[t], kl_type) if t in RESPONSE_TOKENS else 0.0)
            for t in range(13)]
    assert torch.allclose(logp.grad.double(), torch.tensor(grad, dtype=torch.float64), rtol=1e-5, atol=1e-9)


def kernel_form_loss(coef, kl_coef, logp, ref, kl_type):
    """What the fused kernel computes: Σ coef·ℓ + kl_coef·KL(ℓ, ℓ^ref)."""
    return (coef * logp + kl_coef * kl_value(logp, ref, kl_type)).sum()


def random_rollouts(gen, num_seqs):
    prompt = torch.randint(0, 6, (num_seqs,), generator=gen)
    response = torch.randint(1, 10, (num_seqs,), generator=gen)
    positive = torch.rand(num_seqs, generator=gen) < 0.5
    advantage = torch.where(positive, torch.rand(num_seqs, generator=gen), -torch.rand(num_seqs, generator=gen))
    pass_rate = torch.rand(num_seqs, generator=gen)
    return prompt, response, positive, advantage, pass_rate


def sub_batch(rollouts, lo, hi):
    return PackedResponses.from_lengths(*(field[lo:hi] for field in rollouts))


def random_problem(seed: int, num_rollouts: int):
    """Random rollouts packed into one batch, token weights, initial and reference log-probs."""
    gen = torch.Generator().manual_seed(seed)
    rollouts = random_rollouts(gen, num_rollouts)
    full = sub_batch(rollouts, 0, num_rollouts)
    t = full.response_mask.numel()
    omega = torch.where(full.response_mask, torch.rand(t, generator=gen), 0.0)
    logp_init = -torch.rand(t, generator=gen) * 4
    ref = logp_init + 0.2 * torch.randn(t, generator=gen)
    return rollouts, full, omega, logp_init, ref


@pytest.mark.parametrize("cfg", [ObjectiveConfig(), ObjectiveConfig.paper(kl_type="mse"),
                                 ObjectiveConfig(token_weights="none", kl_type="k1")], ids=["code", "paper", "no-trm"])
def test_micro_batch_size_1_vs_4_identical(cfg):
    rollouts, full, omega, logp_init, ref = random_problem(seed=1, num_rollouts=12)
    t = full.response_mask.numel()
    counts = global_counts(full.response_lengths, full.is_positive)

    results = {}
    for micro in (1, 4, 12):
        for form in ("reference", "kernel"):
            logp = logp_init.clone().requires_grad_()
            total = 0.0
            for lo in range(0, 12, micro):
                hi = min(lo + micro, 12)
                batch = sub_batch(rollouts, lo, hi)
                s, e = full.cu_seqlens[lo].item(), full.cu_seqlens[hi].item()
                if form == "reference":
                    total = total + actor_loss_reference(logp[s:e], ref[s:e], batch, omega[s:e], counts, cfg).total
                else:
                    coef, kl_coef = actor_token_coefficients(batch, omega[s:e], counts, cfg)
                    total = total + kernel_form_loss(coef, kl_coef, logp[s:e], ref[s:e], cfg.kl_type)
            total.backward()
            results[micro, form] = logp.grad.double()
    expected = results[12, "reference"]
    for key, grad in results.items():
        assert torch.allclose(grad, expected, rtol=1e-5, atol=1e-7 * expected.abs().max().item()), key


def test_no_positive_rollouts_gives_finite_coefficients():
    batch = PackedResponses.from_lengths([1, 1], [2, 3], [False, False], [0.0, 0.0], [0.0, 0.0])
    counts = global_counts(batch.response_lengths, batch.is_positive)
    assert counts == GlobalCounts(0, 5, 2)
    coef, kl_coef = actor_token_coefficients(batch, batch.response_mask.float(), counts, ObjectiveConfig())
    assert torch.count_nonzero(coef) == 0 and torch.isfinite(kl_coef).all()


def _dp_worker(rank, world, init_file, rollouts, omega, logp_init, ref, full_cu_seqlens, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = ObjectiveConfig()
        indices = [list(range(4)), list(range(4, 7))][rank]  # 7 rollouts split 4 / 3: uneven, none duplicated
        lo, hi = indices[0], indices[-1] + 1
        batch = sub_batch(rollouts, lo, hi)
        counts = global_counts(batch.response_lengths, batch.is_positive, group=dist.group.WORLD)
        s, e = full_cu_seqlens[lo].item(), full_cu_seqlens[hi].item()
        logp = logp_init.clone().requires_grad_()
        coef, kl_coef = actor_token_coefficients(batch, omega[s:e], counts, cfg)
        kernel_form_loss(coef, kl_coef, logp[s:e], ref[s:e], cfg.kl_type).backward()
        grad = logp.grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # gradients are summed over DP ranks
        if rank == 0:
            summed = [counts.positive_tokens, counts.negative_tokens, counts.sequences]
            torch.save({"grad": grad, "counts": summed}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_dp2_with_uneven_split_matches_dp1(tmp_path):
    rollouts, full, omega, logp_init, ref = random_problem(seed=3, num_rollouts=7)
    out_file = os.fspath(tmp_path / "dp2.pt")
    mp.spawn(_dp_worker, nprocs=2, join=True,
             args=(2, os.fspath(tmp_path / "init"), rollouts, omega, logp_init, ref, full.cu_seqlens, out_file))
    dp2 = torch.load(out_file)
    counts = global_counts(full.response_lengths, full.is_positive)
    assert dp2["counts"] == [counts.positive_tokens, counts.negative_tokens, counts.sequences]
    logp = logp_init.clone().requires_grad_()
    actor_loss_reference(logp, ref, full, omega, counts, ObjectiveConfig()).total.backward()
    assert torch.allclose(dp2["grad"], logp.grad, rtol=1e-5, atol=1e-7 * logp.grad.abs().max().item())


def test_joint_normalizer_divides_both_policy_terms_by_all_tokens():
    """'joint' (the REINFORCE/GRPO baselines of the ablation): every policy coefficient is the split
    one times N+/N (positives) or N−/N (negatives); the reference's gradient agrees."""
    batch, omega, counts = hand_batch(), torch.tensor(OMEGA), GlobalCounts(3, 5, 4)
    cfg = ObjectiveConfig(policy_normalizer="joint")
    coef, kl_coef = actor_token_coefficients(batch, omega, counts, cfg)
    positive_positions = [1, 2, 9]
    expected = CODE_COEF.clone()
    expected[positive_positions] *= 3 / 8
    negative_positions = [5, 6, 7, 11, 12]
    expected[negative_positions] *= 5 / 8
    assert torch.allclose(coef, expected, rtol=1e-6, atol=1e-9)
    assert torch.allclose(kl_coef, stream([0.01 / 8] * 8), rtol=1e-6, atol=0)

    logp = (-torch.rand(13, dtype=torch.float64) - 0.1).requires_grad_()
    terms = actor_loss_reference(logp, logp.detach() - 0.05, batch, omega, counts,
                                 ObjectiveConfig(policy_normalizer="joint", kl_coef=0.0))
    terms.total.backward()
    assert torch.allclose(logp.grad.float(), expected, rtol=1e-5, atol=1e-9)


def test_unknown_policy_normalizer_is_rejected():
    with pytest.raises(Exception, match="policy_normalizer"):
        ObjectiveConfig(policy_normalizer="mean")
