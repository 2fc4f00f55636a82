"""A micro-batch of whole rollouts packed into one 1-D token stream, and segment operations on it.

Per-token tensors ([T]) are aligned with the target tokens: position t holds ℓ_t = log π(y_t | ·), the
TRM logit s_t from the state that predicts y_t, etc. Prompt tokens and padding have response_mask False.
"""
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass
class PackedResponses:
    cu_seqlens: torch.Tensor  # [S+1] int, sequence boundaries in the stream (0 first, T last)
    response_mask: torch.Tensor  # [T] bool, True on the scored response tokens (stop token included)
    is_positive: torch.Tensor  # [S] bool, the rollout was verified correct
    advantage: torch.Tensor  # [S] fp32, A of the rollout (computed over all K rollouts of its prompt)
    pass_rate: torch.Tensor  # [S] fp32, p = c/K of the rollout's prompt

    def __post_init__(self):
        s = self.cu_seqlens.numel() - 1
        t = self.response_mask.numel()
        if self.cu_seqlens.dim() != 1 or s < 0:
            raise ValueError("PackedResponses: cu_seqlens must be 1-D with S+1 entries, "
                             f"got shape {tuple(self.cu_seqlens.shape)}")
        if self.response_mask.dtype != torch.bool or self.response_mask.dim() != 1:
            raise ValueError("PackedResponses: response_mask must be a 1-D bool tensor")
        for name in ("is_positive", "advantage", "pass_rate"):
            if getattr(self, name).shape != (s,):
                shape = tuple(getattr(self, name).shape)
                raise ValueError(f"PackedResponses: {name} has shape {shape}, expected ({s},)")
        if self.cu_seqlens.device.type != "cpu":
            return  # the values are checked where that needs no device sync; the trainer's packing builds them
        bounds = self.cu_seqlens.tolist()
        if bounds[0] != 0 or bounds[-1] != t or any(b > e for b, e in zip(bounds, bounds[1:])):
            raise ValueError(f"PackedResponses: cu_seqlens must rise from 0 to T = {t}, got {bounds[:8]}...")
        if s and bool((self.response_lengths == 0).any()):
            empty = torch.nonzero(self.response_lengths == 0)[0].item()
            raise ValueError(f"PackedResponses: sequence {empty} has no response token")

    @classmethod
    def from_lengths(cls, prompt_lengths, response_lengths, is_positive, advantage, pass_rate, device=None):
        """Pack rollouts laid out as [prompt tokens][response tokens], one after another."""
        prompt = torch.as_tensor(prompt_lengths, dtype=torch.long, device=device)
        response = torch.as_tensor(response_lengths, dtype=torch.long, device=device)
        lengths = prompt + response
        cu_seqlens = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
        position = torch.arange(int(cu_seqlens[-1]), device=device)
        seq = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
        response_mask = position - cu_seqlens[seq] >= prompt[seq]
        return cls(cu_seqlens, response_mask,
                   torch.as_tensor(is_positive, dtype=torch.bool, device=device),
                   torch.as_tensor(advantage, dtype=torch.float32, device=device),
                   torch.as_tensor(pass_rate, dtype=torch.float32, device=device))

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    @cached_property
    def sequence_ids(self) -> torch.Tensor:
        """[T] int64: index of the sequence each token belongs to."""
        lengths = (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).long()
        # output_size: T is known on the host, so this needs no device-to-host sync
        return torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths,
                                       output_size=self.response_mask.numel())

    @cached_property
    def response_lengths(self) -> torch.Tensor:
        """[S] int64: response tokens per sequence."""
        return segment_sum(self.response_mask.long(), self.sequence_ids, self.num_sequences)

    @cached_property
    def response_positions(self) -> torch.Tensor:
        """[T] int64: index of each response token among its sequence's response tokens (0 first); −1 elsewhere."""
        counts = torch.cumsum(self.response_mask.long(), 0)
        before = torch.cat([counts.new_zeros(1), counts])[self.cu_seqlens[:-1].long()]
        return torch.where(self.response_mask, counts - self.per_token(before) - 1, -1)

    def per_token(self, per_sequence: torch.Tensor) -> torch.Tensor:
        """Broadcast an [S] tensor to the [T] tokens of each sequence."""
        return per_sequence[self.sequence_ids]


def segment_sum(values: torch.Tensor, sequence_ids: torch.Tensor, num_sequences: int) -> torch.Tensor:
    """[S] sums of [T] values per sequence (differentiable). On CPU `index_add` adds in token order. On
    CUDA it adds with atomics, in no fixed order, unless torch's deterministic algorithms are on
    (`train.deterministic`): then ATen's `index_add_cuda_impl` accumulates by a sorted `index_put_`,
    the same sums each run."""
    return torch.zeros(num_sequences, dtype=values.dtype, device=values.device).index_add(0, sequence_ids, values)


def response_prefix_mean(values: torch.Tensor, batch: PackedResponses) -> torch.Tensor:
    """[T] mean of `values` over the response tokens of the same sequence up to and including t; 0 off-response.

    Not differentiable (used for detached token weights). The running sums are taken in float64 over the
    whole stream, so subtracting a sequence's starting offset stays exact for long packed streams.
    """
    mask = batch.response_mask
    sums = torch.cumsum(torch.where(mask, values.detach().double(), 0.0), dim=0)
    counts = torch.cumsum(mask.double(), dim=0)
    zero = sums.new_zeros(1)
    starts = batch.cu_seqlens[:-1].long()
    sum_before = torch.cat([zero, sums])[starts]
    count_before = torch.cat([zero, counts])[starts]
    prefix_sum = sums - batch.per_token(sum_before)
    prefix_count = counts - batch.per_token(count_before)
    mean = prefix_sum / prefix_count.clamp_min(1.0)
    return torch.where(mask, mean, 0.0).to(values.dtype)
