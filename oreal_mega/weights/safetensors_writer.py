"""Stream tensors into safetensors files without holding them together in memory.

The names and shapes of every tensor are known before any value is (they follow from the model
architecture), so the header can be written first and each tensor's bytes appended as it
arrives. Format: 8-byte little-endian header length, JSON header (padded with spaces to a
multiple of 8), then the raw little-endian data at the offsets the header gives.
"""
import json
import struct
from pathlib import Path

import torch

DTYPE_CODES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}

TensorSpec = tuple[str, tuple[int, ...]]


def nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return torch.Size(shape).numel() * dtype.itemsize


def plan_shards(specs: list[TensorSpec], dtype: torch.dtype,
                max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive groups of tensors of at most `max_shard_bytes` each (a larger tensor alone)."""
    shards, current, size = [], [], 0
    for spec in specs:
        tensor_bytes = nbytes(spec[1], dtype)
        if current and size + tensor_bytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += tensor_bytes
    if current:
        shards.append(current)
    return shards


class SafetensorsStreamWriter:
    """One safetensors file; `write` must receive the planned tensors in the planned order."""

    def __init__(self, path: str | Path, specs: list[TensorSpec], dtype: torch.dtype):
        self.path = Path(path)
        self.dtype = dtype
        self._pending = list(specs)
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in specs:
            size = nbytes(shape, dtype)
            header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        self._file = open(self.path, "wb")
        self._file.write(struct.pack("<Q", len(encoded)))
        self._file.write(encoded)

    @property
    def done(self) -> bool:
        return not self._pending

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected_name, expected_shape = self._pending.pop(0)
        if name != expected_name or tuple(tensor.shape) != tuple(expected_shape):
            raise RuntimeError(f"{self.path}: got {name} {tuple(tensor.shape)}, expected "
                               f"{expected_name} {tuple(expected_shape)}")
        data = tensor.detach().to("cpu", self.dtype).contiguous().view(torch.uint8)
        self._file.write(data.numpy().data)

    def close(self) -> None:
        if self._pending:
            raise RuntimeError(f"{self.path}: closed with {len(self._pending)} tensors unwritten")
        self._file.close()
