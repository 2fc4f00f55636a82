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

Quiet logs: vLLM's finalisation warns "<Class>: Failed to load weights" for every layer that
received nothing, including layers that never have checkpoint weights — the rotary embedding
(a buffer-only module, one per decoder layer) and a tied LM head (its weight is the embedding's).
During finalisation a filter on vLLM's `reload.layerwise` logger drops exactly as many of these
messages per class as there are such layers; a layer that owns parameters and got nothing is
still logged, and reported as incomplete.
"""
import logging
from collections import Counter
from dataclasses import dataclass, field

import torch
from vllm.distributed.weight_transfer.base import WeightTransferEngine
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
from vllm.model_executor.model_loader.reload import (
    finalize_layerwise_reload,
    initialize_layerwise_reload,
    layerwise,
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
        self.incomplete_layers, without_weights = self._unloaded_layers()
        quiet = _DropFailedLoadWarnings(without_weights)
        layerwise.logger.addFilter(quiet)
        try:
            finalize_layerwise_reload(self.model, self.model_config)
        finally:
            layerwise.logger.removeFilter(quiet)

    def report(self) -> tuple[str | None, list[str]]:
        """(failure, incomplete layers) of the last finished session."""
        return self.failure, self.incomplete_layers

    def _unloaded_layers(self) -> tuple[list[str], Counter]:
        """Layers still waiting for elements (fully loaded layers were processed and reset):
        those owning parameters are incomplete; the others — buffer-only modules and aliases —
        legitimately received nothing and are counted per class name."""
        incomplete, without_weights = [], Counter()
        for name, module in self.model.named_modules():
            info = get_layerwise_info(module)
            if not info.can_load() or info.load_numel >= info.load_numel_total:
                continue
            if module._parameters and name not in self._aliases:
                incomplete.append(f"{name} ({info.load_numel}/{info.load_numel_total} elements)")
            elif info.load_numel == 0:
                without_weights[type(module).__name__] += 1
        return incomplete, without_weights

    def shutdown(self) -> None:
        pass


class _DropFailedLoadWarnings(logging.Filter):
    """Drops vLLM's "<Class>: Failed to load weights" up to `expected[Class]` times per class."""

    def __init__(self, expected: Counter):
        super().__init__()
        self.remaining = Counter(expected)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%s: Failed to load weights" and self.remaining[record.args[0]] > 0:
            self.remaining[record.args[0]] -= 1
            return False
        return True


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
