"""TRM token weights and TRM loss on packed streams, against hand computations and float64 loops."""
import math

import pytest
import torch

from oreal_mega.errors import UserError
from oreal_mega.objective import ObjectiveConfig, PackedResponses, reference_logprob_feature, token_weights, trm_loss
from oreal_mega.objective.packed import response_prefix_mean
from oreal_mega.objective.token_weights import correctness_probability, positive_negative_weights, topk_rescale

LN3 = math.log(3.0)  # σ(ln 3) = 0.75


def random_batch(gen, num_seqs=7):
    prompt = torch.randint(0, 5, (num_seqs,), generator=gen)
    response = torch.randint(1, 12, (num_seqs,), generator=gen)
    positive = torch.arange(num_seqs) % 2 == 0
    return PackedResponses.from_lengths(prompt, response, positive, torch.zeros(num_seqs), torch.full((num_seqs,), 0.5))


def test_zero_head_gives_zero_weights_everywhere():
    batch = random_batch(torch.Generator().manual_seed(0))
    zero = torch.zeros(batch.response_mask.numel())
    assert torch.equal(correctness_probability(zero, batch), torch.where(batch.response_mask, 0.5, 0.0))
    assert torch.count_nonzero(token_weights(zero, batch, ObjectiveConfig())) == 0
    # top-k mode (as in the reference code) min-max scales equal values to 1: ⌊ratio·T⌋ ones per sequence
    topk = token_weights(zero, batch, ObjectiveConfig(token_weights="topk"))
    ones_per_seq = torch.zeros(batch.num_sequences).index_add(0, batch.sequence_ids, topk)
    assert torch.equal(ones_per_seq, torch.floor(batch.response_lengths * 0.25))


def test_threshold_weights_hand_case():
    # seq 0 positive: prompt 1 token, s = [ln3, ln3]    -> m = [ln3, ln3] -> q = .75, .75 -> ω+ = .5, .5
    # seq 1 negative: prompt 2 tokens, s = [−ln3, ln3]  -> m = [−ln3, 0]  -> q = .25, .5  -> ω− = .5, 0
    batch = PackedResponses.from_lengths([1, 2], [2, 2], [True, False], [1.0, -1.0], [0.5, 0.5])
    logits = torch.tensor([9.0, LN3, LN3, -7.0, 5.0, -LN3, LN3])
    w = token_weights(logits, batch, ObjectiveConfig())
    assert torch.allclose(w, torch.tensor([0, .5, .5, 0, 0, .5, 0]), atol=1e-6)
    # th+ = 0.6: (0.75 − 0.6)/0.4 = 0.375; th− = 0.7: ((1 − .25) − .7)/.3 = 1/6
    w = token_weights(logits, batch, ObjectiveConfig(positive_threshold=0.6, negative_threshold=0.7))
    assert torch.allclose(w, torch.tensor([0, .375, .375, 0, 0, 1 / 6, 0]), atol=1e-6)
    assert w.requires_grad is False


def test_prefix_mean_matches_float64_loop_on_long_offset_stream():
    gen = torch.Generator().manual_seed(1)
    batch = random_batch(gen, num_seqs=40)
    # a large offset makes a naive fp32 whole-stream cumsum lose the per-sequence digits
    values = torch.randn(batch.response_mask.numel(), generator=gen) + 1000.0
    got = response_prefix_mean(values, batch)
    expected = torch.zeros_like(values, dtype=torch.float64)
    for s in range(batch.num_sequences):
        lo, hi = batch.cu_seqlens[s].item(), batch.cu_seqlens[s + 1].item()
        running, count = 0.0, 0
        for t in range(lo, hi):
            if batch.response_mask[t]:
                running += values[t].item()
                count += 1
                expected[t] = running / count
    assert torch.allclose(got.double(), expected, rtol=1e-6, atol=0)


def reference_topk(prob, batch, ratio):
    out = torch.zeros_like(prob)
    for s in range(batch.num_sequences):
        idx = torch.nonzero(batch.response_mask & (batch.sequence_ids == s)).squeeze(1)
        k = int(idx.numel() * ratio)
        if k == 0:
            continue
        values, pos = torch.topk(prob[idx], k)
        span = values.max() - values.min()
        out[idx[pos]] = (values - values.min()) / span if span > 0 else torch.ones_like(values)
    return out


@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0])
def test_topk_rescale_matches_per_sequence_loop(ratio):
    gen = torch.Generator().manual_seed(2)
    batch = random_batch(gen, num_seqs=9)
    prob = torch.where(batch.response_mask, torch.rand(batch.response_mask.numel(), generator=gen), 0.0)
    assert torch.allclose(topk_rescale(prob, batch, ratio), reference_topk(prob, batch, ratio), atol=1e-7)


def test_topk_equal_values_give_ones_and_short_sequences_zero():
    batch = PackedResponses.from_lengths([0, 0], [4, 3], [True, False], [1.0, -1.0], [0.5, 0.5])
    prob = torch.tensor([0.7, 0.7, 0.7, 0.7, 0.2, 0.9, 0.4])
    # ⌊4·0.5⌋ = 2 equal values -> 1, the rest 0; ⌊3·0.5⌋ = 1 token -> the max, alone -> 1
    assert topk_rescale(prob, batch, 0.5).tolist() == [1, 1, 0, 0, 0, 1, 0]
    # ⌊3·0.25⌋ = 0: nothing kept in sequence 1
    assert topk_rescale(prob, batch, 0.25).tolist() == [1, 0, 0, 0, 0, 0, 0]


def test_topk_mode_selects_by_q_for_positives_and_one_minus_q_for_negatives():
    batch = PackedResponses.from_lengths([0, 0], [4, 4], [True, False], [1.0, -1.0], [0.5, 0.5])
    logits = torch.tensor([2.0, -2.0, 2.0, 2.0, -2.0, 2.0, -2.0, -2.0])
    cfg = ObjectiveConfig(token_weights="topk", positive_topk_ratio=0.5, negative_topk_ratio=0.5)
    q = correctness_probability(logits, batch)
    w_pos, w_neg = positive_negative_weights(q, batch, cfg)
    assert torch.equal(w_pos, reference_topk(q, batch, 0.5))
    assert torch.equal(w_neg, reference_topk(torch.where(batch.response_mask, 1 - q, 0.0), batch, 0.5))
    w = token_weights(logits, batch, cfg)
    assert torch.equal(w, torch.cat([w_pos[:4], w_neg[4:]]))


def test_no_trm_gives_unit_weights_on_responses():
    batch = random_batch(torch.Generator().manual_seed(3))
    w = token_weights(None, batch, ObjectiveConfig(token_weights="none"))
    assert torch.equal(w, batch.response_mask.float())
    with pytest.raises(ValueError, match="trm_logits must have shape"):
        token_weights(None, batch, ObjectiveConfig())


def test_trm_loss_hand_case_value_and_gradient():
    # seq 0 positive, response logits [1, 3] -> mean 2; seq 1 negative, [−1] -> mean −1; M = 5 (whole step)
    batch = PackedResponses.from_lengths([1, 1], [2, 1], [True, False], [1.0, -1.0], [0.5, 0.5])
    logits = torch.tensor([50.0, 1.0, 3.0, -50.0, -1.0], requires_grad=True)
    loss = trm_loss(logits, batch, num_sequences_global=5)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = (-math.log(sig(2.0)) - math.log(1 - sig(-1.0))) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    grad = [0.0, (sig(2.0) - 1) / 2 / 5, (sig(2.0) - 1) / 2 / 5, 0.0, sig(-1.0) / 5]
    assert torch.allclose(logits.grad, torch.tensor(grad), rtol=1e-5, atol=1e-9)


def test_trm_loss_is_micro_batch_invariant():
    gen = torch.Generator().manual_seed(4)
    prompt = torch.randint(0, 4, (8,), generator=gen)
    response = torch.randint(1, 9, (8,), generator=gen)
    positive = torch.arange(8) % 3 == 0
    full = PackedResponses.from_lengths(prompt, response, positive, torch.zeros(8), torch.zeros(8))
    logits = torch.randn(full.response_mask.numel(), generator=gen)
    total = trm_loss(logits, full, 8)
    parts = 0.0
    for lo in range(0, 8, 3):
        hi = min(lo + 3, 8)
        part = PackedResponses.from_lengths(prompt[lo:hi], response[lo:hi], positive[lo:hi], torch.zeros(hi - lo),
                                            torch.zeros(hi - lo))
        start, stop = full.cu_seqlens[lo].item(), full.cu_seqlens[hi].item()
        parts = parts + trm_loss(logits[start:stop], part, 8)
    assert parts.item() == pytest.approx(total.item(), rel=1e-6)


def test_trained_linear_scorer_moves_weights_the_right_way():
    """Tokens carry a feature that is +1 ('good'), −1 ('bad') or 0 ('filler'); correct responses contain
    good and filler tokens, wrong ones bad and filler. A linear token scorer trained with the TRM loss
    must learn to give positives ω+ > 0 and negatives ω− > 0, starting from all-zero weights."""
    gen = torch.Generator().manual_seed(5)
    num_seqs, length = 32, 12
    positive = torch.arange(num_seqs) % 2 == 0
    batch = PackedResponses.from_lengths([2] * num_seqs, [length] * num_seqs, positive, torch.zeros(num_seqs),
                                         torch.zeros(num_seqs))
    signal = torch.where(batch.per_token(positive), 1.0, -1.0)
    informative = torch.rand(signal.numel(), generator=gen) < 0.5
    features = torch.stack([torch.where(informative, signal, 0.0), torch.randn(signal.numel(), generator=gen),
                            torch.ones_like(signal)], dim=1)
    head = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(head.weight)
    cfg = ObjectiveConfig()
    neg_tokens = batch.response_mask & ~batch.per_token(positive)
    pos_tokens = batch.response_mask & batch.per_token(positive)
    before = token_weights(head(features).squeeze(1), batch, cfg)
    assert torch.count_nonzero(before) == 0
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    losses = []
    for _ in range(150):
        loss = trm_loss(head(features).squeeze(1), batch, num_seqs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    after = token_weights(head(features).squeeze(1), batch, cfg)
    assert after[pos_tokens].mean() > 0.5 and after[neg_tokens].mean() > 0.5
    # the opposite weight of each label stays at zero: ω− on positives, ω+ on negatives
    w_pos, w_neg = positive_negative_weights(correctness_probability(head(features).squeeze(1), batch), batch, cfg)
    assert w_neg[pos_tokens].mean() < 0.05 and w_pos[neg_tokens].mean() < 0.05


def test_oracle_weights_hand_case():
    # seq 0 positive (its first_error is ignored) → ω+ = 1 on every response token
    # seq 1 negative, error at response token 1 → 0, 1, 1;  seq 2 negative, none located → 1, 1
    # seq 3 negative, error at its last token 2 → 0, 0, 1;   seq 4 negative, error at token 0 → 1, 1
    batch = PackedResponses.from_lengths([2, 1, 2, 3, 1], [4, 3, 2, 3, 2], [True, False, False, False, False],
                                         torch.zeros(5), torch.full((5,), 0.5))
    first_error = torch.tensor([2, 1, -1, 2, 0])
    expected = torch.tensor([0, 0, 1, 1, 1, 1,  0, 0, 1, 1,  0, 0, 1, 1,  0, 0, 0, 0, 0, 1,  0, 1, 1.0])
    cfg = ObjectiveConfig(token_weights="oracle")
    w = token_weights(None, batch, cfg, first_error=first_error)
    assert w.dtype == torch.float32 and torch.equal(w, expected)
    empty = PackedResponses.from_lengths([], [], [], [], [])  # a rank's empty micro-batch
    assert token_weights(None, empty, cfg, first_error=torch.zeros(0, dtype=torch.long)).numel() == 0
    with pytest.raises(ValueError, match="needs the oracle's first_error"):
        token_weights(None, batch, cfg)
    with pytest.raises(ValueError, match=r"first_error must have shape \(5,\)"):
        token_weights(None, batch, cfg, first_error=first_error[:4])


def test_reference_logprob_feature_is_the_running_minimum_of_earlier_response_tokens():
    # seq 0: prompt 2, response log-probs [−1, −0.5, −3, −0.1]; seq 1: prompt 1, response [−2, −0.2, −5]
    batch = PackedResponses.from_lengths([2, 1], [4, 3], [True, False], [0.0, 0.0], [0.0, 0.0])
    mask = batch.response_mask
    logp = torch.zeros(mask.numel())
    logp[mask] = torch.tensor([-1.0, -0.5, -3.0, -0.1, -2.0, -0.2, -5.0])
    logp[~mask] = -40.0  # off-response values (none in the trainer's stream) must not leak in
    feature = reference_logprob_feature(logp, batch)
    expected = torch.zeros(mask.numel())
    # first response token 0; then the min over the earlier ones; seq 1 restarts (seq 0's −3 does not carry)
    expected[mask] = torch.tensor([0.0, -1.0, -1.0, -3.0, 0.0, -2.0, -2.0])
    assert torch.equal(feature, expected)
    empty = PackedResponses.from_lengths([], [], [], [], [])  # a rank's empty micro-batch
    assert reference_logprob_feature(torch.zeros(0), empty).shape == (0,)


def test_reference_logprob_feature_matches_a_per_sequence_loop_on_a_long_stream():
    gen = torch.Generator().manual_seed(4)
    batch = random_batch(gen, num_seqs=40)
    logp = -torch.rand(batch.response_mask.numel(), generator=gen, dtype=torch.float64) * 30
    feature = reference_logprob_feature(logp, batch)
    for s in range(batch.num_sequences):
        tokens = (batch.sequence_ids == s) & batch.response_mask
        values = logp[tokens]
        expected = [0.0] + [values[:t].min().item() for t in range(1, values.numel())]
        assert torch.allclose(feature[tokens].double(), torch.tensor(expected[: values.numel()], dtype=torch.float64),
                              rtol=1e-6)
    assert torch.count_nonzero(feature[~batch.response_mask]) == 0


def test_trm_input_is_checked():
    assert ObjectiveConfig(trm_input="hidden+reference_logprob").trm_input == "hidden+reference_logprob"
    with pytest.raises(UserError, match="trm_input = 'logits' is not one of hidden, hidden"):
        ObjectiveConfig(trm_input="logits")
