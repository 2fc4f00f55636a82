"""Kept trajectories → packed micro-batches for the policy, reference and token-RM passes.

Per-token fields are aligned with the hidden states: position j of a sequence holds what the
state after token j predicts, i.e. token j+1. A response of R tokens after a prompt of P tokens
is therefore scored at positions P-1 … P+R-2 of its sequence.
"""
from dataclasses import dataclass

import torch

from oreal_mega.models.pipeline import MicroBatch, pack
from oreal_mega.objective import PackedResponses

IGNORE = -100


@dataclass
class Trajectory:
    prompt_ids: list[int]
    response_ids: list[int]
    is_positive: bool
    advantage: float
    pass_rate: float
    rollout_logprobs: list[float] | None = None  # the rollout engine's log-prob of each response token
    prompt: int = -1  # index of its prompt within the step (pairs a positive with its negative)
    first_error: int = -1  # the task oracle's first erroneous response token; -1: none located

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def _at_response(traj: Trajectory, values, fill, dtype) -> torch.Tensor:
    """A per-response-token list placed at the hidden positions that predict those tokens."""
    out = torch.full((traj.length,), fill, dtype=dtype)
    start = len(traj.prompt_ids) - 1
    out[start:start + len(traj.response_ids)] = torch.tensor(values, dtype=dtype)
    return out


def micro_batches(trajectories: list[Trajectory], plan: list[list[int]], length: int) -> list[MicroBatch]:
    """One MicroBatch per entry of `plan` (lists of trajectory indices), all padded to `length`.

    An empty entry (a data-parallel rank with fewer sequences than micro-batches) gives an all-padding
    micro-batch: no sequence, no label, the same fields, so it runs through every pass and collective
    and adds nothing. `rollout_logp` is a field of every micro-batch or of none: the step decides."""
    with_rollout_logp = all(t.rollout_logprobs is not None for t in trajectories)
    out = []
    for indices in plan:
        chosen = [trajectories[i] for i in indices]
        # each field starts with a zero-length tensor: it has its dtype even with no sequence
        fields = {"labels": [torch.empty(0, dtype=torch.long)]
                  + [_at_response(t, t.response_ids, IGNORE, torch.long) for t in chosen]}
        if with_rollout_logp:
            fields["rollout_logp"] = [torch.empty(0, dtype=torch.float32)] + [
                _at_response(t, t.rollout_logprobs, 0.0, torch.float32) for t in chosen]
        mb = pack([torch.tensor(t.prompt_ids + t.response_ids) for t in chosen], length, fields,
                  pad_values={"labels": IGNORE})
        mb.sequence_fields = {
            "index": torch.tensor(indices, dtype=torch.long),
            "is_positive": torch.tensor([t.is_positive for t in chosen], dtype=torch.bool),
            "advantage": torch.tensor([t.advantage for t in chosen], dtype=torch.float32),
            "pass_rate": torch.tensor([t.pass_rate for t in chosen], dtype=torch.float32),
            "first_error": torch.tensor([t.first_error for t in chosen], dtype=torch.long),
            "length": torch.tensor([t.length for t in chosen], dtype=torch.long),
        }
        mb.num_labelled = sum(len(t.response_ids) for t in chosen)
        out.append(mb)
    return out


def packed_responses(mb: MicroBatch) -> PackedResponses:
    """The objective's view of a micro-batch's real tokens (the padding segment left out)."""
    n = mb.num_real_tokens
    lengths = mb.sequence_fields["length"]  # already on the device: no host-to-device copy per pass
    cu = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
    return PackedResponses(cu, mb.fields["labels"][:n] != IGNORE, mb.sequence_fields["is_positive"],
                           mb.sequence_fields["advantage"], mb.sequence_fields["pass_rate"])


def pad_to(values: torch.Tensor, length: int) -> torch.Tensor:
    """Extend a per-real-token tensor with zeros over the micro-batch's padding segment."""
    return torch.cat([values, values.new_zeros(length - len(values))])
