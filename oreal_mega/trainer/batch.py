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

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def _labels(traj: Trajectory) -> torch.Tensor:
    """Next-token labels at hidden positions, IGNORE outside the response."""
    labels = torch.full((traj.length,), IGNORE, dtype=torch.long)
    start = len(traj.prompt_ids) - 1
    labels[start:start + len(traj.response_ids)] = torch.tensor(traj.response_ids, dtype=torch.long)
    return labels


def micro_batches(trajectories: list[Trajectory], plan: list[list[int]], length: int) -> list[MicroBatch]:
    """One MicroBatch per entry of `plan` (lists of trajectory indices), all padded to `length`."""
    out = []
    for indices in plan:
        chosen = [trajectories[i] for i in indices]
        mb = pack([torch.tensor(t.prompt_ids + t.response_ids) for t in chosen], length,
                  {"labels": [_labels(t) for t in chosen]}, pad_values={"labels": IGNORE})
        mb.sequence_fields = {
            "index": torch.tensor(indices, dtype=torch.long),
            "is_positive": torch.tensor([t.is_positive for t in chosen], dtype=torch.bool),
            "advantage": torch.tensor([t.advantage for t in chosen], dtype=torch.float32),
            "pass_rate": torch.tensor([t.pass_rate for t in chosen], dtype=torch.float32),
        }
        out.append(mb)
    return out


def packed_responses(mb: MicroBatch) -> PackedResponses:
    """The objective's view of a micro-batch's real tokens (the padding segment left out)."""
    n = mb.num_real_tokens
    lengths = torch.tensor(mb.seq_lengths[: len(mb.sequence_fields["index"])], device=mb.input_ids.device)
    cu = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
    return PackedResponses(cu, mb.fields["labels"][:n] != IGNORE, mb.sequence_fields["is_positive"],
                           mb.sequence_fields["advantage"], mb.sequence_fields["pass_rate"])


def pad_to(values: torch.Tensor, length: int) -> torch.Tensor:
    """Extend a per-real-token tensor with zeros over the micro-batch's padding segment."""
    return torch.cat([values, values.new_zeros(length - len(values))])
