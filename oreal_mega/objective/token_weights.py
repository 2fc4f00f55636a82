"""Token-level reward model (TRM) side of the objective: its loss, and the token weights ω± it yields
(or, with token_weights = 'oracle', the task oracle's weights instead).

Input: the TRM's per-token logits s_t [T] on a PackedResponses stream (the head is Linear(hidden, 1)).
q_t = σ(m_t), m_t = mean of s over the response tokens ≤ t of the same sequence, detached.
Positive sequences use ω+ (from q), negative ones ω− (from 1 − q). Weights are not renormalised.

Oracle weights take a first-error index per sequence (`oreal_mega.tasks.oracle.first_error_token`,
among its response tokens; −1 where none was located): ω+ = 1 on every token of a positive;
ω− = 1 from a negative's first error on and 0 before it (the correct prefix is not pushed down, the
error and what follows it are, as a token-RM whose q falls at the error and stays low would do);
ω− = 1 everywhere when no error was located (as with token_weights = 'none').
"""
import torch
import torch.nn.functional as F

from .config import ObjectiveConfig
from .packed import PackedResponses, response_prefix_mean, segment_sum


def correctness_probability(trm_logits: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[T] q_t = σ(prefix mean of s) on response tokens, detached; 0 elsewhere."""
    q = torch.sigmoid(response_prefix_mean(trm_logits.float(), batch))
    return torch.where(batch.response_mask, q, 0.0)


def threshold_rescale(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """clamp((prob − th)/(1 − th), 0, 1); at th = 0.5 this is clamp(2·prob − 1, 0, 1) (Eq. 10)."""
    return ((prob - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)


def topk_rescale(prob: torch.Tensor, batch: PackedResponses, ratio: float) -> torch.Tensor:
    """Per sequence, keep the ⌊ratio·T_resp⌋ response tokens with the highest prob, min-max scale the kept
    values to [0, 1] (all 1 when they are equal), set every other token to 0. Ties: earlier token first.
    Computed over the whole stream with masks (no data-dependent shapes, so no host sync)."""
    mask, s = batch.response_mask, batch.num_sequences
    group = torch.where(mask, batch.sequence_ids, s)  # the tokens off the responses form group s
    # order tokens by group, then by descending prob (two stable sorts)
    order = torch.argsort(torch.where(mask, prob, -torch.inf), descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    sizes = segment_sum(torch.ones_like(group), group, s + 1)
    rank_in_group = torch.arange(order.numel(), device=prob.device) - (torch.cumsum(sizes, 0) - sizes)[group[order]]
    keep_count = torch.cat([torch.floor(batch.response_lengths.double() * ratio).long(), sizes.new_zeros(1)])
    kept = torch.zeros_like(mask).scatter(0, order, rank_in_group < keep_count[group[order]])
    vmax = prob.new_full((s + 1,), -torch.inf).scatter_reduce(0, group, torch.where(kept, prob, -torch.inf), "amax")
    vmin = prob.new_full((s + 1,), torch.inf).scatter_reduce(0, group, torch.where(kept, prob, torch.inf), "amin")
    span = (vmax - vmin)[group]
    scaled = torch.where(span > 0, (prob - vmin[group]) / span.clamp_min(torch.finfo(span.dtype).tiny), 1.0)
    return torch.where(kept, scaled, 0.0)


def positive_negative_weights(q: torch.Tensor, batch: PackedResponses, cfg: ObjectiveConfig):
    """(ω+ [T], ω− [T]) for every response token, before choosing by the sequence's label."""
    if cfg.token_weights == "threshold":
        return threshold_rescale(q, cfg.positive_threshold), threshold_rescale(1.0 - q, cfg.negative_threshold)
    if cfg.token_weights == "topk":
        return (topk_rescale(q, batch, cfg.positive_topk_ratio),
                topk_rescale(1.0 - q, batch, cfg.negative_topk_ratio))
    raise ValueError(f"token weights: no rescale for token_weights = {cfg.token_weights!r}")


def oracle_token_weights(first_error: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[T] fp32 ω from the oracle's first error per sequence ([S] int, −1: none located); see the top."""
    if first_error.shape != (batch.num_sequences,):
        raise ValueError(f"token weights: first_error must have shape ({batch.num_sequences},), "
                         f"got {tuple(first_error.shape)}")
    error = batch.per_token(first_error.to(batch.response_positions.device).long())
    weights = batch.per_token(batch.is_positive) | (error < 0) | (batch.response_positions >= error)
    return (weights & batch.response_mask).float()


def token_weights(trm_logits: torch.Tensor | None, batch: PackedResponses, cfg: ObjectiveConfig,
                  first_error: torch.Tensor | None = None) -> torch.Tensor:
    """[T] fp32 ω: ω+ on positive sequences, ω− on negative ones, 0 off-response; detached.

    With token_weights = 'none' (no TRM), ω = 1 on every response token and trm_logits is ignored.
    With 'oracle', ω = oracle_token_weights(first_error, batch) and trm_logits is ignored.
    """
    mask = batch.response_mask
    if cfg.token_weights == "none":
        return mask.float()
    if cfg.token_weights == "oracle":
        if first_error is None:
            raise ValueError("token weights: token_weights = 'oracle' needs the oracle's first_error")
        return oracle_token_weights(first_error, batch)
    if trm_logits is None or trm_logits.shape != mask.shape:
        shape = None if trm_logits is None else tuple(trm_logits.shape)
        raise ValueError(f"token weights: trm_logits must have shape {tuple(mask.shape)}, got {shape}")
    q = correctness_probability(trm_logits, batch)
    w_pos, w_neg = positive_negative_weights(q, batch, cfg)
    weights = torch.where(batch.per_token(batch.is_positive), w_pos, w_neg)
    return torch.where(mask, weights, 0.0).float()


def reference_logprob_feature(reference_logp: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[T] f_t = min over the response tokens y_k, k < t, of the same sequence of log π_ref(y_k)
    (`reference_logp`: the reference pass's [T] log-probs of the labels); 0 at each response's first
    token and off-response. A function of the prefix before y_t, as the TRM's state is: the input
    of trm_input = 'hidden+reference_logprob' (s_t = w·h_t + a·f_t). Detached, no host sync.
    """
    mask = batch.response_mask
    values = torch.where(mask, reference_logp.detach().double(), 0.0)  # log-probs: all <= 0
    # Per-sequence running minimum in one cummin: shifting sequence k down by k·C (C > max |value|)
    # puts every earlier sequence's values above all of its own. An empty stream (a data-parallel
    # rank's all-padding micro-batch) has no max; its size is a host-side shape: no sync.
    largest = values.abs().max() if values.numel() else 0.0
    shift = (largest + 1.0) * batch.sequence_ids.double()
    running_min = torch.cummin(values - shift, dim=0).values + shift
    before_t = torch.cat([running_min.new_zeros(1), running_min[:-1]])
    return torch.where(mask & (batch.response_positions > 0), before_t, 0.0).float()


def sequence_mean_logit(trm_logits: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[S] fp32 mean_t s_t over each sequence's response tokens: the logit of the TRM's sequence-level
    verdict σ(mean s) (differentiable)."""
    logits = torch.where(batch.response_mask, trm_logits.float(), 0.0)
    return segment_sum(logits, batch.sequence_ids, batch.num_sequences) / batch.response_lengths.float()


def trm_loss(trm_logits: torch.Tensor, batch: PackedResponses, num_sequences_global: int) -> torch.Tensor:
    """Σ_sequences BCE(σ(mean_t s_t), 1[positive]) / M, M = kept sequences of the whole step (Eq. 12).

    Each sequence counts once whatever its length; summing this over micro-batches and DP ranks gives
    the step's mean over M.
    """
    seq_mean = sequence_mean_logit(trm_logits, batch)
    bce = F.binary_cross_entropy_with_logits(seq_mean, batch.is_positive.float(), reduction="sum")
    return bce / max(num_sequences_global, 1)
