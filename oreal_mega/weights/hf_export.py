"""Megatron chunks of any TP/PP/VPP layout → HuggingFace tensors, one at a time.

`iter_hf_tensors` is the one gather-and-rename path: `export_hf` writes its output to disk, and
weight sync to vLLM feeds it to the engine. Each megatron tensor is all-gathered over TP by the
pipeline stage that owns it, broadcast to the other stages, split into its HF tensors (q/k/v,
gate/up) and yielded on every rank; memory stays at one full tensor beyond the model.
"""
import json
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from tqdm import tqdm

from oreal_mega.models.builder import DTYPES
from oreal_mega.models.hf_config import ModelArch
from oreal_mega.weights.atomic import atomic_directory
from oreal_mega.weights.hf_files import copy_model_files
from oreal_mega.weights.layout import (gather_tp, global_layer_names, is_vocab_parallel,
                                       megatron_full_shape, unwrap)
from oreal_mega.weights.mappings import entries, hf_shapes, split
from oreal_mega.weights.safetensors_writer import (SafetensorsStreamWriter, TensorSpec,
                                                   nbytes, plan_shards)

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3


def hf_tensor_specs(arch: ModelArch) -> list[TensorSpec]:
    """HF names and shapes, in the order `iter_hf_tensors` yields them."""
    specs = []
    for entry in entries(arch):
        shapes = hf_shapes(entry, arch, megatron_full_shape(entry.megatron, arch))
        specs += list(zip(entry.hf, shapes))
    return specs


def _owned_parameters(chunks, arch: ModelArch) -> dict[str, torch.nn.Parameter]:
    owned = {}
    for chunk in chunks:
        module = unwrap(chunk)
        params = dict(module.named_parameters())
        for local, name in global_layer_names(module).items():
            if name == "output_layer.weight" and arch.tie_word_embeddings:
                continue  # the last stage's copy of the tied embedding
            owned[name] = params[local]
    return owned


def _owner_ranks(owned: dict, pp_group, pp: int) -> dict[str, int]:
    """Global rank, within this rank's pipeline group, of the stage that holds each tensor."""
    if pp == 1:
        return {name: dist.get_rank() for name in owned}
    names_per_stage = [None] * pp
    dist.all_gather_object(names_per_stage, sorted(owned), group=pp_group)
    ranks = dist.get_process_group_ranks(pp_group)
    return {name: ranks[stage] for stage, names in enumerate(names_per_stage) for name in names}


@torch.no_grad()
def iter_hf_tensors(chunks: list[torch.nn.Module], arch: ModelArch
                    ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, full tensor) for the whole model, in `hf_tensor_specs` order, on every
    rank; a collective: all ranks of the model-parallel group must consume it together. The
    tensors are in the model's dtype and on its device, and may be views of a buffer that the
    next step reuses: copy what you keep. With megatron's `overlap_param_gather`, sync the
    parameters first."""
    from megatron.core import parallel_state

    tp_group = parallel_state.get_tensor_model_parallel_group()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    pp_group = parallel_state.get_pipeline_model_parallel_group() if pp > 1 else None
    owned = _owned_parameters(chunks, arch)
    owner = _owner_ranks(owned, pp_group, pp)
    any_param = next(unwrap(chunks[0]).parameters())
    for entry in entries(arch):
        name = entry.megatron
        if name not in owner:
            raise RuntimeError(f"no pipeline stage holds {name}")
        if name in owned:
            full = gather_tp(name, owned[name].detach(), tp_group)
            if is_vocab_parallel(name):
                full = full[: arch.vocab_size]
        else:
            full = torch.empty(megatron_full_shape(name, arch), dtype=any_param.dtype,
                               device=any_param.device)
        if pp > 1:
            full = full.contiguous()
            dist.broadcast(full, src=owner[name], group=pp_group)
        yield from zip(entry.hf, split(entry.fusion, full, arch))


def export_hf(chunks: list[torch.nn.Module], arch: ModelArch, out_dir: str | Path,
              src_dir: str | Path, dtype: str | None = None, overwrite: bool = False,
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, progress: bool = False) -> Path:
    """Write the model as an HF directory (collective; rank 0 writes): config.json and
    generation_config.json and tokenizer files from `src_dir`, safetensors shards of at most
    `max_shard_bytes` and their index. `dtype` ("bfloat16", ...) defaults to the model's.
    The directory appears complete or not at all."""
    model_dtype = next(unwrap(chunks[0]).parameters()).dtype
    torch_dtype = DTYPES[dtype] if dtype else model_dtype
    dtype_name = next(k for k, v in DTYPES.items() if v == torch_dtype)
    is_main = dist.get_rank() == 0
    specs = hf_tensor_specs(arch)
    shards = plan_shards(specs, torch_dtype, max_shard_bytes)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    with atomic_directory(out_dir, overwrite) as partial:
        tensors = iter_hf_tensors(chunks, arch)
        bar = tqdm(total=len(specs), unit="tensor", desc="exporting HF weights",
                   disable=not (progress and is_main))
        for file_name, shard_specs in zip(names, shards):
            writer = (SafetensorsStreamWriter(partial / file_name, shard_specs, torch_dtype)
                      if is_main else None)
            for _ in shard_specs:
                name, tensor = next(tensors)
                if writer:
                    writer.write(name, tensor)
                bar.update()
            if writer:
                writer.close()
        bar.close()
        if is_main:
            copy_model_files(src_dir, partial, dtype_name)
            weight_map = {name: file for file, shard in zip(names, shards) for name, _ in shard}
            total = sum(nbytes(shape, torch_dtype) for _, shape in specs)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (partial / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return Path(out_dir)
