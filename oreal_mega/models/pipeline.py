"""Run packed micro-batches through megatron-core's pipeline schedules.

Sequences are packed back to back (THD) into micro-batches; every micro-batch is padded with one
trailing dummy segment to a common length because pipeline stages exchange fixed-shape tensors.
The loss function receives the last stage's final hidden states `[tokens, hidden]` — logits are
never built here — and returns an already globally-normalised loss, so megatron is told not to
divide it by token or micro-batch counts (`calculate_per_token_loss`).
"""
from dataclasses import dataclass, field
from typing import Callable

import torch
from megatron.core.pipeline_parallel import get_forward_backward_func

from oreal_mega.models.attention import packed_seq_params
from oreal_mega.models.ddp import mark_grad_ready_in_backward


@dataclass
class MicroBatch:
    """Sequences packed into one stream. Per-token tensors in `fields` share the stream's layout."""

    input_ids: torch.Tensor  # [T] int64
    position_ids: torch.Tensor  # [T] int64, restarting at 0 for each sequence
    seq_lengths: list[int]  # real sequences, then (maybe) one padding segment
    num_real_tokens: int
    fields: dict[str, torch.Tensor] = field(default_factory=dict)  # per token [T, ...]
    sequence_fields: dict[str, torch.Tensor] = field(default_factory=dict)  # per real sequence [S]
    index: int = 0  # position in the step's list of micro-batches
    num_labelled: int | None = None  # labels that are not ignored, when the builder knows it (saves a host sync)

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device),
                          self.seq_lengths, self.num_real_tokens,
                          {k: v.to(device) for k, v in self.fields.items()},
                          {k: v.to(device) for k, v in self.sequence_fields.items()}, self.index,
                          self.num_labelled)


def pack(sequences: list[torch.Tensor], length: int, fields: dict[str, list[torch.Tensor]] = None,
         pad_id: int = 0, pad_values: dict[str, float] = None) -> MicroBatch:
    """Concatenate token sequences (and their per-token fields) and pad the stream to `length`."""
    fields = fields or {}
    pad_values = pad_values or {}
    lengths = [len(s) for s in sequences]
    total = sum(lengths)
    if total > length:
        raise ValueError(f"packed micro-batch of {total} tokens exceeds its length {length}")
    pad = length - total
    ids = torch.cat([s.long() for s in sequences] + [torch.full((pad,), pad_id, dtype=torch.long)])
    positions = torch.cat([torch.arange(n) for n in lengths] + [torch.arange(pad)])
    packed = {}
    for name, values in fields.items():
        tail = torch.full((pad, *values[0].shape[1:]), pad_values.get(name, 0), dtype=values[0].dtype)
        packed[name] = torch.cat(list(values) + [tail])
    return MicroBatch(ids, positions, lengths + ([pad] if pad else []), total, packed)


LossFn = Callable[[torch.Tensor, torch.nn.Module, MicroBatch], tuple[torch.Tensor, dict]]


def forward_backward(chunks: list[torch.nn.Module], micro_batches: list[MicroBatch],
                     loss_fn: LossFn, *, forward_only: bool = False) -> list[dict]:
    """Forward (and backward unless `forward_only`) over all micro-batches with megatron's
    schedule for this rank's layout. Returns, on the last pipeline stage, the metrics dict that
    `loss_fn` produced for each micro-batch (empty list elsewhere)."""
    if not micro_batches:
        return []
    length = len(micro_batches[0].input_ids)
    if any(len(mb.input_ids) != length for mb in micro_batches):
        raise ValueError("all micro-batches of a step must be padded to the same length")
    device = next(chunks[0].parameters()).device
    for i, mb in enumerate(micro_batches):
        mb.index = i
    for chunk in chunks:
        _unwrap(chunk).output_hidden_states = True

    def forward_step(data_iterator, model):
        mb = next(data_iterator).to(device)
        hidden = model(mb.input_ids[None], mb.position_ids[None], None,
                       packed_seq_params=packed_seq_params(mb.seq_lengths, device))

        def loss_func(output):
            module = _unwrap(model)
            module.head_grad_written = False  # set by lm_head_main_grad() when loss_fn takes it
            loss, metrics = loss_fn(output.squeeze(1), module, mb)
            if module.head_grad_written and loss.requires_grad:
                mark_grad_ready_in_backward(model, module.lm_head_parameter(), loss)
            return loss, torch.ones((), dtype=torch.int, device=device), metrics

        return hidden, loss_func

    iterators = [iter(micro_batches) for _ in chunks]
    return get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks if len(chunks) > 1 else chunks[0],
        num_microbatches=len(micro_batches),
        seq_length=length,
        micro_batch_size=1,
        forward_only=forward_only,
    )


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    while hasattr(module, "module"):
        module = module.module
    return module
