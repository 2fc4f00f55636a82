"""An in-process vLLM weight-transfer engine: the trainer hands tensors over by reference.

vLLM's weight-transfer lifecycle runs on the worker: `start_weight_update` switches the model
into layer-wise reload (every layer's parameters go back to checkpoint format, loads are
buffered per layer), each `update_weights` chunk feeds `model.load_weights`, and a layer is
re-processed (e.g. repacked for oneDNN on CPU) as soon as all its elements arrived;
`finish_weight_update` finalises once. Because processing waits for a whole layer, a fused
parameter (q/k/v → qkv_proj) may even straddle chunks — unlike separate `reload_weights`
calls, each of which is a complete reload that finalises half-loaded layers with garbage.

The built-in backends move tensors over NCCL or CUDA IPC; here trainer and engine share a
process (vLLM's `uni` executor on CPU, `external_launcher` under torchrun on GPU), so the
chunk carries the tensors themselves.

Errors stay on the worker until the session ends: a chunk that fails to load (e.g. an
unknown tensor name) is recorded in `failure` and later chunks are skipped, instead of raising
mid-session (the worker would then abandon the session with the model still in reload state).
`finish_weight_update` always finalises and records every parameter-owning layer that was not
loaded or only partly loaded (`incomplete_layers`); the caller reads both through `report()`
and refuses to generate from a half-updated policy.
"""
from dataclasses import dataclass, field

import torch
from vllm.distributed.weight_transfer.base import WeightTransferEngine
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
from vllm.model_executor.model_loader.reload import (
    finalize_layerwise_reload,
    initialize_layerwise_reload,
)
from vllm.model_executor.model_loader.reload.layerwise import get_layerwise_info

BACKEND_NAME = "oreal_inprocess"


@dataclass
class InProcessInitInfo:
    """Nothing to set up: no transport."""


@dataclass
class InProcessUpdateInfo:
    named_tensors: list[tuple[str, torch.Tensor]] = field(default_factory=list)


class InProcessWeightTransferEngine(WeightTransferEngine[InProcessInitInfo, InProcessUpdateInfo]):
    init_info_cls = InProcessInitInfo
    update_info_cls = InProcessUpdateInfo
    supports_draft_weight_update = False

    failure: str | None = None
    incomplete_layers: list[str] = []
    _aliases: set[str] = set()

    def init_transfer_engine(self, init_info: InProcessInitInfo) -> None:
        pass

    def start_weight_update(self) -> None:
        self.failure = None
        self.incomplete_layers = []
        self._aliases = _modules_with_only_shared_parameters(self.model)
        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict) -> None:
        # The base class synchronises the accelerator after each chunk, which raises on a
        # CPU-only torch; in-process copies are ordered on the current stream anyway.
        if self.failure:
            return
        chunk = self.parse_update_info(update_info)
        try:
            self.receive_weights(chunk)
        except Exception as err:
            names = [name for name, _ in chunk.named_tensors]
            self.failure = (f"loading the chunk {names[0]} .. {names[-1]} raised "
                            f"{type(err).__name__}: {err}")

    def receive_weights(self, update_info: InProcessUpdateInfo) -> None:
        self.model.load_weights(update_info.named_tensors)

    def finish_weight_update(self) -> None:
        self.incomplete_layers = self._find_incomplete_layers()
        finalize_layerwise_reload(self.model, self.model_config)

    def report(self) -> tuple[str | None, list[str]]:
        """(failure, incomplete layers) of the last finished session."""
        return self.failure, self.incomplete_layers

    def _find_incomplete_layers(self) -> list[str]:
        """Layers still waiting for elements: fully loaded layers were processed and reset."""
        incomplete = []
        for name, module in self.model.named_modules():
            info = get_layerwise_info(module)
            if not info.can_load() or not module._parameters or name in self._aliases:
                continue
            if info.load_numel < info.load_numel_total:
                incomplete.append(f"{name} ({info.load_numel}/{info.load_numel_total} elements)")
        return incomplete

    def shutdown(self) -> None:
        pass


def _modules_with_only_shared_parameters(model: torch.nn.Module) -> set[str]:
    """Modules whose parameters all belong to an earlier module too (a tied lm_head): they
    are filled through the owner's loader and never count loaded elements themselves."""
    seen: set[int] = set()
    aliases = set()
    for name, module in model.named_modules():
        params = [p for p in module._parameters.values() if p is not None]
        if params and all(id(p) in seen for p in params):
            aliases.add(name)
        seen.update(id(p) for p in params)
    return aliases


def register() -> None:
    """Make the backend known to vLLM (idempotent); call before building the LLM."""
    try:
        WeightTransferEngineFactory.register_engine(BACKEND_NAME, InProcessWeightTransferEngine)
    except ValueError:  # already registered by an earlier engine in this process
        pass
