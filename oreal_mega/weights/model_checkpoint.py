"""Model checkpoints that load at any TP/PP/VPP layout: megatron-core `dist_checkpointing` of
the chunks' sharded state dicts, kept next to the HF config and tokenizer they came from.

    DIR/oreal_model.json  format, version, dtype and the layout it was saved from
    DIR/hf/               config.json, generation_config.json, tokenizer files
    DIR/model/            dist_checkpointing files (vocab padding adapts to the loading TP)
"""
import json
from pathlib import Path

import torch
import torch.distributed as dist

from oreal_mega.errors import UserError
from oreal_mega.models.builder import DTYPES
from oreal_mega.models.hf_config import ModelArch, parse_arch, read_hf_config
from oreal_mega.weights.atomic import atomic_directory
from oreal_mega.weights.hf_files import copy_model_files
from oreal_mega.weights.hf_load import check_hf_config
from oreal_mega.weights.layout import unwrap

FORMAT = "oreal-mega-model"
VERSION = 1
META_FILE = "oreal_model.json"


def _sharded_state_dict(chunks: list[torch.nn.Module]) -> dict:
    # Tensor keys are global names; the per-chunk grouping only shapes the returned dict.
    return {f"chunk{i}": unwrap(chunk).sharded_state_dict() for i, chunk in enumerate(chunks)}


def save_model_checkpoint(chunks: list[torch.nn.Module], dest: str | Path, hf_dir: str | Path,
                          overwrite: bool = False) -> Path:
    """Collective: every rank saves its shards; the directory appears complete or not at all."""
    from megatron.core import dist_checkpointing, parallel_state

    dtype = next(unwrap(chunks[0]).parameters()).dtype
    dtype_name = next(name for name, value in DTYPES.items() if value == dtype)
    with atomic_directory(dest, overwrite) as partial:
        if dist.get_rank() == 0:
            (partial / "hf").mkdir()
            (partial / "model").mkdir()
            copy_model_files(hf_dir, partial / "hf", dtype_name)
            meta = {"format": FORMAT, "version": VERSION, "dtype": dtype_name,
                    "saved_with": {"tp": parallel_state.get_tensor_model_parallel_world_size(),
                                   "pp": parallel_state.get_pipeline_model_parallel_world_size()}}
            (partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        dist.barrier()
        dist_checkpointing.save(_sharded_state_dict(chunks), str(partial / "model"))
    return Path(dest)


def read_model_checkpoint(directory: str | Path) -> tuple[ModelArch, str, Path]:
    """(architecture, dtype name, HF files directory) of a checkpoint written by
    `save_model_checkpoint`."""
    directory = Path(directory)
    meta_file = directory / META_FILE
    if not meta_file.is_file():
        raise UserError(f"{directory} is not an oreal-mega model checkpoint (no {META_FILE})")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UserError(f"{meta_file}: format {meta.get('format')!r} version {meta.get('version')!r}"
                        f" is not {FORMAT!r} version {VERSION}")
    hf_dir = directory / "hf"
    return parse_arch(read_hf_config(hf_dir), where=str(hf_dir / "config.json")), meta["dtype"], hf_dir


def _check_shard_files(model_dir: Path) -> None:
    """Name the file when a shard of the dist_checkpointing files is missing or shorter than their
    index says (a truncated copy), where torch's reader fails with a bare EOFError."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        index = FileSystemReader(str(model_dir)).read_metadata()
    except Exception as err:  # missing, truncated or not a torch checkpoint index
        raise UserError(f"{model_dir / '.metadata'}: unreadable checkpoint index ({type(err).__name__}: {err})"
                        ) from None
    needed: dict[str, int] = {}
    for item in index.storage_data.values():
        needed[item.relative_path] = max(needed.get(item.relative_path, 0), item.offset + item.length)
    for name, size in sorted(needed.items()):
        file = model_dir / name
        if not file.is_file():
            raise UserError(f"{file}: checkpoint shard file is missing")
        if file.stat().st_size < size:
            raise UserError(f"{file}: truncated checkpoint shard ({file.stat().st_size} bytes, its index "
                            f"needs {size})")


def load_model_checkpoint(chunks: list[torch.nn.Module], arch: ModelArch, directory: str | Path) -> None:
    """Collective: fill this rank's chunks from a checkpoint saved at any layout, after checking
    that the checkpoint holds the model `arch` describes."""
    from megatron.core import dist_checkpointing

    directory = Path(directory)
    read_model_checkpoint(directory)
    check_hf_config(directory / "hf", arch)
    if not (directory / "model" / "metadata.json").is_file():
        raise UserError(f"{directory / 'model'}: megatron checkpoint files are missing")
    _check_shard_files(directory / "model")
    state = dist_checkpointing.load(_sharded_state_dict(chunks), str(directory / "model"))
    for i, chunk in enumerate(chunks):
        unwrap(chunk).load_state_dict(state[f"chunk{i}"])
