"""Per-family tables between HuggingFace tensor names and megatron-core full names.

A family file lists `TensorMap`s; `{i}` in a name stands for the (global) layer index. The
fusions shared by every GPT family live here:

- "qkv": megatron's `linear_qkv` holds, per query group g, [the q heads of g; k_g; v_g] while HF
  keeps q, k, v as separate tensors (GQA: query head h belongs to group h // (heads / groups)).
- "stack": megatron's SwiGLU `linear_fc1` is [gate; up] stacked along the rows.

Both fusions act on rows only and keep each query group (each gate/up row) whole, so the same
function fuses one tensor-parallel rank's row slices of the HF parts into that rank's slice of
the megatron tensor (see `weights.layout.shard`).
"""
import importlib
from dataclasses import dataclass

import torch

from oreal_mega.errors import UserError
from oreal_mega.models.hf_config import ModelArch

FAMILIES = ("qwen2", "llama")


@dataclass(frozen=True)
class TensorMap:
    """One megatron full tensor and the HF tensors it is made of."""

    megatron: str
    hf: tuple[str, ...]
    fusion: str | None = None  # None (one HF tensor), "qkv" or "stack"


def family_tables(family: str) -> tuple[list[TensorMap], list[TensorMap], list[TensorMap]]:
    """(before the layers, per layer, after the layers) tables of an architecture family."""
    if family not in FAMILIES:
        raise UserError(f"no weight mapping for architecture family {family!r} "
                        f"(supported: {', '.join(FAMILIES)})")
    module = importlib.import_module(f"oreal_mega.weights.mappings.{family}")
    return module.FIRST, module.LAYER, module.LAST


def entries(arch: ModelArch) -> list[TensorMap]:
    """Every megatron full tensor of the model, in export order, with its HF sources.
    A tied model has no `output_layer.weight` (HF checkpoints of tied models have no lm_head)."""
    first, layer, last = family_tables(arch.family)
    result = list(first)
    for i in range(arch.num_layers):
        result += [TensorMap(t.megatron.format(i=i), tuple(h.format(i=i) for h in t.hf), t.fusion)
                   for t in layer]
    result += last
    if arch.tie_word_embeddings:
        result = [e for e in result if e.megatron != "output_layer.weight"]
    return result


def hf_shapes(entry: TensorMap, arch: ModelArch, megatron_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of the HF tensors behind a megatron full tensor of `megatron_shape` (vocab unpadded)."""
    rest = megatron_shape[1:]
    if entry.fusion == "qkv":
        q_rows = arch.num_attention_heads * arch.kv_channels
        kv_rows = arch.num_query_groups * arch.kv_channels
        return [(q_rows, *rest), (kv_rows, *rest), (kv_rows, *rest)]
    if entry.fusion == "stack":
        return [(megatron_shape[0] // 2, *rest)] * 2
    return [megatron_shape]


def fuse(fusion: str | None, parts: list[torch.Tensor], num_groups: int) -> torch.Tensor:
    """Megatron tensor (or one TP rank's slice of it) from HF parts (or the rank's row slices);
    `num_groups` is the number of query groups the parts hold."""
    if fusion is None:
        return parts[0]
    if fusion == "stack":
        return torch.cat(parts, dim=0)
    q, k, v = parts
    rest = q.shape[1:]
    grouped = [t.reshape(num_groups, -1, *rest) for t in (q, k, v)]
    return torch.cat(grouped, dim=1).reshape(-1, *rest)


def split(fusion: str | None, full: torch.Tensor, arch: ModelArch) -> list[torch.Tensor]:
    """Inverse of `fuse` on a full megatron tensor."""
    if fusion is None:
        return [full]
    if fusion == "stack":
        return list(full.chunk(2, dim=0))
    rest = full.shape[1:]
    groups, head_dim = arch.num_query_groups, arch.kv_channels
    q_rows = arch.num_attention_heads // groups * head_dim
    grouped = full.reshape(groups, -1, *rest)
    q, k, v = grouped.split([q_rows, head_dim, head_dim], dim=1)
    return [t.reshape(-1, *rest) for t in (q, k, v)]
