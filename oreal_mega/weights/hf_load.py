"""Load a HuggingFace safetensors checkpoint straight into this rank's megatron chunks.

Each rank reads from the shards only the rows / columns it owns (`safe_open(...).get_slice`),
so a rank's memory holds its own parameters plus one slice at a time, at any TP/PP/VPP layout.
Before any weight is read, the checkpoint's `config.json` is compared with the architecture the
model was built from, and every shard file is opened (a missing or truncated file fails first).
"""
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from oreal_mega.errors import UserError
from oreal_mega.models.hf_config import ModelArch, parse_arch, read_hf_config
from oreal_mega.weights.layout import (global_layer_names, megatron_full_shape, tp_range,
                                       tp_split_dim, unwrap)
from oreal_mega.weights.mappings import entries, fuse, hf_shapes

# ModelArch field → the config.json key named in mismatch errors.
_CHECKED_FIELDS = {
    "family": "architectures",
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "ffn_hidden_size": "intermediate_size",
    "num_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "num_query_groups": "num_key_value_heads",
    "kv_channels": "head_dim",
    "norm_eps": "rms_norm_eps",
    "rope_theta": "rope_theta",
    "rope_scaling_factor": "rope_scaling.factor",
    "tie_word_embeddings": "tie_word_embeddings",
}


def check_hf_config(hf_dir: str | Path, arch: ModelArch) -> None:
    """Fail, naming the field and both values, when the checkpoint's config.json describes a
    different model than `arch`."""
    file = Path(hf_dir) / "config.json"
    found = parse_arch(read_hf_config(file), where=str(file))
    for field, key in _CHECKED_FIELDS.items():
        if getattr(found, field) != getattr(arch, field):
            raise UserError(f"{file}: {key}={getattr(found, field)!r} does not match the model "
                            f"config's {getattr(arch, field)!r}")


class SafetensorsCheckpoint:
    """The safetensors files of an HF directory (sharded with an index, or one model.safetensors),
    all opened up front so that a missing or truncated shard fails before any weight is read."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        single = self.directory / "model.safetensors"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(f"{index}: not a safetensors index with a weight_map ({err})") from None
            files = sorted(set(weight_map.values()))
        elif single.is_file():
            weight_map, files = None, [single.name]
        else:
            raise UserError(f"{self.directory}: no model.safetensors or model.safetensors.index.json")
        missing = [f for f in files if not (self.directory / f).is_file()]
        if missing:
            raise UserError(f"{self.directory}: missing shard file(s) {', '.join(missing)}")
        self._handles = {}
        for name in files:
            try:
                self._handles[name] = safe_open(str(self.directory / name), framework="pt")
            except SafetensorError as err:
                raise UserError(f"{self.directory / name}: unreadable or truncated safetensors "
                                f"file ({err})") from None
        if weight_map is None:
            weight_map = {key: single.name for key in self._handles[single.name].keys()}
        self._file_of = weight_map

    def file_of(self, name: str) -> Path:
        if name not in self._file_of:
            raise UserError(f"{self.directory}: tensor {name} is not in the checkpoint")
        return self.directory / self._file_of[name]

    def _slice(self, name: str):
        file = self.file_of(name)
        try:
            return self._handles[file.name].get_slice(name)
        except SafetensorError:
            raise UserError(f"{file}: tensor {name} is listed in the index but not in the file") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._slice(name).get_shape())

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int | None = None
             ) -> torch.Tensor:
        """The tensor, or only its [start, stop) range along `dim`."""
        tensor_slice = self._slice(name)
        if dim is None:
            return tensor_slice[:]
        return tensor_slice[start:stop] if dim == 0 else tensor_slice[:, start:stop]


def _read_rank_part(files: SafetensorsCheckpoint, hf_name: str, expected: tuple[int, ...],
                    megatron_name: str, tp_rank: int, tp: int, padded_vocab: int) -> torch.Tensor:
    """This rank's slice of one HF tensor, checked against its expected full shape."""
    got = files.shape(hf_name)
    if got != tuple(expected):
        raise UserError(f"{files.file_of(hf_name)}: tensor {hf_name} has shape {list(got)}, "
                        f"expected {list(expected)}")
    dim = tp_split_dim(megatron_name)
    if dim is None:
        return files.read(hf_name)
    start, stop, pad_rows = tp_range(megatron_name, expected[dim], tp_rank, tp, padded_vocab)
    part = files.read(hf_name, dim, start, stop)
    if pad_rows:
        part = torch.cat([part, part.new_zeros(pad_rows, *part.shape[1:])])
    return part


@torch.no_grad()
def load_hf_weights(chunks: list[torch.nn.Module], arch: ModelArch, hf_dir: str | Path,
                    progress: bool = False) -> None:
    """Fill this rank's chunks (DDP-wrapped or not) from an HF checkpoint directory."""
    from megatron.core import parallel_state
    from tqdm import tqdm

    check_hf_config(hf_dir, arch)
    files = SafetensorsCheckpoint(hf_dir)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    padded_vocab = arch.padded_vocab_size(tp)
    by_megatron_name = {entry.megatron: entry for entry in entries(arch)}
    modules = [unwrap(chunk) for chunk in chunks]
    bar = tqdm(total=sum(1 for m in modules for _ in m.parameters()), unit="tensor",
               desc="loading HF weights", disable=not progress)
    for module in modules:
        params = dict(module.named_parameters())
        for local, name in global_layer_names(module).items():
            if name == "output_layer.weight" and arch.tie_word_embeddings:
                name = "embedding.word_embeddings.weight"  # the last stage's copy of a tied head
            entry = by_megatron_name[name]
            expected = hf_shapes(entry, arch, megatron_full_shape(name, arch))
            parts = [_read_rank_part(files, hf_name, shape, name, tp_rank, tp, padded_vocab)
                     for hf_name, shape in zip(entry.hf, expected)]
            value = fuse(entry.fusion, parts, arch.num_query_groups // tp)
            if value.shape != params[local].shape:
                raise RuntimeError(f"{name}: built {tuple(value.shape)} for a parameter of "
                                   f"{tuple(params[local].shape)}")
            params[local].copy_(value)
            bar.update()
    bar.close()



def build_from_hf(arch: ModelArch, model_cfg) -> list[torch.nn.Module]:
    """This rank's chunks of the model in `model_cfg.path` (dtype, recompute from `model_cfg`),
    weights read from its safetensors."""
    from oreal_mega.models.builder import build_model

    chunks = build_model(arch, dtype=model_cfg.dtype, recompute=model_cfg.recompute)
    load_hf_weights(chunks, arch, model_cfg.path)
    return chunks
