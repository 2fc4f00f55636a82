"""How well the token-RM localises errors and ranks rollouts: diagnostics against the task's oracle.

Error localisation. On a PackedResponses stream with q_t = σ(prefix-mean TRM logit) (the
`correctness_probability` the token weights use) and the oracle's first erroneous response token t*
of each sequence (`oreal_mega.tasks.oracle.first_error_token`; −1 where none was located):
- the q drop at response position t is d_t = q_{t−1} − q_t, with q_{−1} = ½ (the verdict of an RM
  that knows nothing, e.g. its zero-initialised head), so d_0 = ½ − q_0;
- s_t, hence q_t, comes from the state that predicts y_t, so the first position that has seen the
  erroneous token y_{t*} is e = t* + 1: the error's drop is d_e;
- a wrong response (is_positive false) with t* located and e inside the response gets the AUC of d_e
  against the drops of all its other response positions (Mann–Whitney: the fraction of them that
  d_e exceeds, ties counting half). 1: the largest drop is where the error was seen; ½: chance.
  Responses whose error is their last token (e.g. a premature stop token) have no such position and
  are left out.
The step's metric is the mean over such responses, so each micro-batch gives a sum and a count.

Pair ranking. The fraction of (positive, negative) pairs of the same prompt whose positive has the
higher sequence-level verdict logit mean_t s_t (ties counting half): with keep_pairs, one pair per
kept prompt.
"""
import torch

from .packed import PackedResponses, segment_sum


def q_drops(q: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[T] float64 d_t = q_{t−1} − q_t on response tokens (q_{−1} = ½), 0 elsewhere. A sequence's
    response tokens are consecutive in the stream, so q_{t−1} is the stream's previous value."""
    values = q.double()
    previous = torch.cat([values.new_full((1,), 0.5), values[:-1]])
    previous = torch.where(batch.response_positions == 0, 0.5, previous)
    return torch.where(batch.response_mask, previous - values, 0.0)


def error_localisation(q: torch.Tensor, batch: PackedResponses, first_error: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ per-response AUC, number of responses measured) of this stream; see the top. The metric
    `trm_error_auc` is the first summed over micro-batches and ranks divided by the second."""
    s = batch.num_sequences
    seen_at = first_error.to(q.device).long() + 1
    measured = ~batch.is_positive & (seen_at > 0) & (seen_at < batch.response_lengths)
    drops = q_drops(q, batch)
    at_error = batch.response_mask & (batch.response_positions == batch.per_token(seen_at))
    error_drop = batch.per_token(segment_sum(torch.where(at_error, drops, 0.0), batch.sequence_ids, s))
    others = batch.response_mask & ~at_error & batch.per_token(measured)
    wins = (error_drop > drops).double() + 0.5 * (error_drop == drops).double()
    auc = segment_sum(torch.where(others, wins, 0.0), batch.sequence_ids, s) / (batch.response_lengths - 1).clamp_min(1)
    return torch.where(measured, auc, 0.0).sum(), measured.sum()  # masked sums: no host sync


def pair_accuracy(sequence_logit: torch.Tensor, is_positive: torch.Tensor, prompt: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ over same-prompt (positive, negative) pairs of [positive scored higher] + ½[equal], number of
    pairs), from [M] sequence-level logits, labels and prompt ids of the step's kept rollouts."""
    score = sequence_logit.double()
    pairs = (prompt[:, None] == prompt[None, :]) & is_positive[:, None] & ~is_positive[None, :]
    gap = score[:, None] - score[None, :]
    wins = (gap > 0).double() + 0.5 * (gap == 0).double()
    return wins[pairs].sum(), pairs.sum()
