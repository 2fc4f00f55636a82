"""How a full (TP=1, PP=1) megatron-core GPT parameter maps onto one rank of a TP/PP/VPP layout.

"Full" names are those of a single-process model (`decoder.layers.{global index}...`); "local" names
are those of one model chunk on one rank (`decoder.layers.{index within the chunk}...`).
"""
import re

import torch
import torch.distributed as dist

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.*)$")

# Split dimension of each tensor-parallel parameter (by name suffix); others are replicated.
_COLUMN_PARALLEL = ("word_embeddings.weight", "linear_qkv.weight", "linear_qkv.bias",
                    "linear_fc1.weight", "output_layer.weight")
_ROW_PARALLEL = ("linear_proj.weight", "linear_fc2.weight")
_VOCAB_PARALLEL = ("word_embeddings.weight", "output_layer.weight")
# SwiGLU's fc1 stacks [gate; up]; each rank holds [gate shard; up shard], not a contiguous slice.
_GATED = ("linear_fc1.weight",)


def tp_split_dim(name: str) -> int | None:
    if name.endswith(_COLUMN_PARALLEL):
        return 0
    if name.endswith(_ROW_PARALLEL):
        return 1
    return None


def shard(name: str, full: torch.Tensor, tp_rank: int, tp: int) -> torch.Tensor:
    """This rank's slice of a full parameter."""
    dim = tp_split_dim(name)
    if dim is None or tp == 1:
        return full
    if name.endswith(_GATED):
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(tp, dim=0)[tp_rank], up.chunk(tp, dim=0)[tp_rank]], dim=0)
    if full.shape[dim] % tp:
        raise ValueError(f"{name}: dim {dim} of shape {tuple(full.shape)} does not split over tp={tp}")
    return full.chunk(tp, dim=dim)[tp_rank]


def unshard(name: str, shards: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `shard`: the full parameter from every rank's slice, in TP rank order."""
    dim = tp_split_dim(name)
    if dim is None or len(shards) == 1:
        return shards[0]
    if name.endswith(_GATED):
        halves = [s.chunk(2, dim=0) for s in shards]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
    return torch.cat(shards, dim=dim)


def gather_tp(name: str, local: torch.Tensor, group) -> torch.Tensor:
    """All-gather a TP-sharded parameter (or gradient) into its full tensor."""
    size = dist.get_world_size(group) if group is not None else 1
    if tp_split_dim(name) is None or size == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(size)]
    dist.all_gather(parts, local.contiguous(), group=group)
    return unshard(name, parts)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model chunk inside DDP / Float16Module wrappers."""
    while hasattr(module, "module"):
        module = module.module
    return module


def global_layer_names(chunk: torch.nn.Module) -> dict[str, str]:
    """Map the chunk's local parameter names to full-model names (layer index made global)."""
    layer_numbers = {str(i): layer.layer_number - 1 for i, layer in enumerate(chunk.decoder.layers)}
    mapping = {}
    for local in dict(chunk.named_parameters()):
        match = _LAYER.match(local)
        mapping[local] = (f"decoder.layers.{layer_numbers[match.group(1)]}.{match.group(2)}"
                          if match else local)
    return mapping


def is_vocab_parallel(name: str) -> bool:
    return name.endswith(_VOCAB_PARALLEL)


def megatron_full_shape(name: str, arch) -> tuple[int, ...]:
    """Shape of a full megatron parameter of `arch` (a `ModelArch`), vocab unpadded."""
    hidden, heads, groups, head_dim = (arch.hidden_size, arch.num_attention_heads,
                                       arch.num_query_groups, arch.kv_channels)
    match = _LAYER.match(name)
    suffix = match.group(2) if match else name
    shapes = {
        "embedding.word_embeddings.weight": (arch.vocab_size, hidden),
        "output_layer.weight": (arch.vocab_size, hidden),
        "decoder.final_layernorm.weight": (hidden,),
        "input_layernorm.weight": (hidden,),
        "pre_mlp_layernorm.weight": (hidden,),
        "self_attention.linear_qkv.weight": ((heads + 2 * groups) * head_dim, hidden),
        "self_attention.linear_qkv.bias": ((heads + 2 * groups) * head_dim,),
        "self_attention.linear_proj.weight": (hidden, heads * head_dim),
        "mlp.linear_fc1.weight": (2 * arch.ffn_hidden_size, hidden),
        "mlp.linear_fc2.weight": (hidden, arch.ffn_hidden_size),
    }
    if suffix not in shapes:
        raise KeyError(f"unknown megatron parameter {name}")
    return shapes[suffix]


def tp_range(name: str, size: int, tp_rank: int, tp: int, padded_size: int | None = None
             ) -> tuple[int, int, int]:
    """(start, stop, zero rows to append) of this rank's part, along the split dimension, of a
    source tensor with `size` entries there. Vocab-parallel tensors are split as if padded to
    `padded_size` rows; a rank's rows past the real vocab are zeros."""
    if is_vocab_parallel(name):
        rows = padded_size // tp
        start = min(tp_rank * rows, size)
        stop = min(start + rows, size)
        return start, stop, rows - (stop - start)
    if size % tp:
        raise ValueError(f"{name}: {size} entries do not split over tp={tp}")
    return tp_rank * size // tp, (tp_rank + 1) * size // tp, 0


def pad_vocab(name: str, full: torch.Tensor, tp: int) -> torch.Tensor:
    """Zero rows appended to a vocab-sized tensor so it splits evenly over `tp` ranks."""
    if not name.endswith(_VOCAB_PARALLEL) or full.shape[0] % tp == 0:
        return full
    extra = tp - full.shape[0] % tp
    return torch.cat([full, full.new_zeros(extra, *full.shape[1:])])
