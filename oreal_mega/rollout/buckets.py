"""Group a stream of HF-named tensors into size-bounded buckets for weight sync.

Buckets close only at decoder-layer boundaries, so every tensor of a layer (the q/k/v that
vLLM fuses into `qkv_proj`, the gate/up fused into `gate_up_proj`, MoE experts) travels in
the same bucket as long as the producer yields a layer's tensors contiguously. Tensors
outside the decoder layers (embeddings, final norm, lm_head) are groups of their own.
"""
import re
from collections.abc import Iterable, Iterator

import torch

_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")

NamedTensors = list[tuple[str, torch.Tensor]]


def layer_group(hf_name: str) -> str:
    """The fusion group of a parameter: 'layers.<i>' inside decoder layer i, else its name."""
    match = _LAYER_INDEX.search(hf_name)
    return f"layers.{match.group(1)}" if match else hf_name


def _groups(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[NamedTensors]:
    """Consecutive runs of tensors that share a `layer_group`."""
    current: NamedTensors = []
    current_key = None
    for name, tensor in named_tensors:
        key = layer_group(name)
        if current and key != current_key:
            yield current
            current = []
        current_key = key
        current.append((name, tensor))
    if current:
        yield current


def bucketize(named_tensors: Iterable[tuple[str, torch.Tensor]],
              bucket_bytes: int) -> Iterator[NamedTensors]:
    """Yield buckets of whole layer groups, each at most `bucket_bytes` unless a single
    group is larger (then that group is a bucket of its own). Consumes the input lazily:
    at most one bucket plus one group is held at a time."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    bucket: NamedTensors = []
    size = 0
    for group in _groups(named_tensors):
        group_size = sum(tensor.nbytes for _, tensor in group)
        if bucket and size + group_size > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.extend(group)
        size += group_size
    if bucket:
        yield bucket
