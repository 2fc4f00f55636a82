"""Token-RM diagnostics: the error-localisation AUC of q drops and the pair ranking accuracy, against
hand computations (ties included) and a float64 loop."""
import random

import pytest
import torch

from oreal_mega.objective import PackedResponses
from oreal_mega.objective.rm_diagnostics import error_localisation, pair_accuracy, q_drops


def packed(prompt, response, positive):
    n = len(prompt)
    return PackedResponses.from_lengths(prompt, response, positive, torch.zeros(n), torch.full((n,), 0.5))


def stream(batch, per_sequence_q):
    """[T] fp32 q: each sequence's response values in order, 0 on prompt tokens."""
    q = torch.zeros(batch.response_mask.numel())
    q[batch.response_mask] = torch.tensor([v for values in per_sequence_q for v in values])
    return q


def test_auc_hand_case_with_ties_and_exclusions():
    # Values are multiples of 1/8, so drops and ties are exact.
    # seq 0 wrong, t* = 1 → seen at e = 2. q = .625 .75 .375 .375 .25: drops (q_{-1} = ½)
    #   −.125 −.125 .375 0 .125; d_e = .375 beats the other 4 → AUC 1
    # seq 1 wrong, t* = 0 → e = 1. q = .5 .5 .25 .25: drops 0 0 .25 0; d_e = 0 ties d_0 and d_3,
    #   loses to d_2 → (½ + 0 + ½)/3 = 1/3
    # seq 2 right (left out although it has an index); seq 3 wrong, t* = 2 = its last token (left out);
    # seq 4 wrong, no error located (left out)
    batch = packed([2, 1, 1, 2, 1], [5, 4, 2, 3, 2], [False, False, True, False, False])
    q = stream(batch, [[.625, .75, .375, .375, .25], [.5, .5, .25, .25], [.75, .25], [.5, .25, .125], [.25, .5]])
    assert torch.equal(q_drops(q, batch)[batch.response_mask], torch.tensor(
        [-.125, -.125, .375, 0, .125, 0, 0, .25, 0, -.25, .5, 0, .25, .125, .25, -.25], dtype=torch.float64))
    auc_sum, responses = error_localisation(q, batch, torch.tensor([1, 0, 0, 2, -1]))
    assert int(responses) == 2
    assert auc_sum.item() == pytest.approx(1 + 1 / 3, abs=1e-15)


def test_an_rm_that_knows_nothing_scores_one_half_and_empty_streams_count_nothing():
    batch = packed([3, 2], [6, 4], [False, False])
    q = torch.where(batch.response_mask, 0.5, 0.0)  # the zero-initialised head
    auc_sum, responses = error_localisation(q, batch, torch.tensor([2, 0]))
    assert (auc_sum / responses).item() == 0.5
    empty = packed([], [], [])  # a rank's empty micro-batch
    assert [int(x) for x in error_localisation(torch.zeros(0), empty, torch.zeros(0, dtype=torch.long))] == [0, 0]


def test_auc_matches_a_float64_loop_on_random_streams():
    gen = torch.Generator().manual_seed(3)
    rng = random.Random(3)
    n = 9
    prompt = torch.randint(0, 4, (n,), generator=gen).tolist()
    response = torch.randint(1, 10, (n,), generator=gen).tolist()
    positive = [i % 3 == 0 for i in range(n)]
    batch = packed(prompt, response, positive)
    per_sequence = [[rng.choice([0.125, 0.25, 0.5, 0.75]) for _ in range(r)] for r in response]
    first_error = [rng.randrange(-1, r) for r in response]
    total, count = 0.0, 0
    for values, error, pos in zip(per_sequence, first_error, positive):
        seen = error + 1
        if pos or error < 0 or seen >= len(values):
            continue
        drops = [(values[t - 1] if t else 0.5) - values[t] for t in range(len(values))]
        others = [d for t, d in enumerate(drops) if t != seen]
        total += sum(1.0 if drops[seen] > d else 0.5 if drops[seen] == d else 0.0 for d in others) / len(others)
        count += 1
    auc_sum, responses = error_localisation(stream(batch, per_sequence), batch, torch.tensor(first_error))
    assert count > 0 and int(responses) == count
    assert auc_sum.item() == pytest.approx(total, abs=1e-12)


def test_pair_accuracy_hand_case():
    # prompt 0: pos 1.0 > neg 0.5 → 1; prompt 1: pos 0.2 ties neg 0.2 → ½, below neg 0.9 → 0;
    # prompt 2: no negative → no pair
    logits = torch.tensor([1.0, 0.5, 0.2, 0.2, 0.9, 3.0])
    positive = torch.tensor([True, False, True, False, False, True])
    prompt = torch.tensor([0, 0, 1, 1, 1, 2])
    wins, pairs = pair_accuracy(logits, positive, prompt)
    assert (wins.item(), int(pairs)) == (1.5, 3)
