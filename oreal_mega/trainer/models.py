"""The three megatron models of an OREAL run, all in the same TP/PP layout and all initialised from
the policy checkpoint: the trained policy, the frozen reference, and the token-level reward model."""
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from oreal_mega.models.builder import DTYPES, build_model
from oreal_mega.models.ddp import wrap_ddp
from oreal_mega.models.hf_config import ModelArch
from oreal_mega.models.offload import Parked
from oreal_mega.trainer.optim import build_optimizer
from oreal_mega.trainer.token_rm import to_token_rm
from oreal_mega.weights.hf_load import load_hf_weights


@dataclass
class OrealModels:
    policy: list  # DDP-wrapped chunks
    reference: list  # plain chunks, no gradients
    token_rm: list | None  # DDP-wrapped chunks; None when token weights are off
    policy_optim: tuple  # (optimizer, scheduler)
    rm_optim: tuple | None
    parked: dict[str, Parked] = field(default_factory=dict)  # "reference" / "token_rm" when offloaded

    def park(self) -> None:
        """Move the offloaded models to host memory (after building or resuming)."""
        for parked in self.parked.values():
            parked.offload()

    def on_device(self, name: str):
        """Context in which model `name` is on its device; parked again afterwards if offloaded."""
        parked = self.parked.get(name)
        return parked.loaded() if parked is not None else nullcontext()

    def checkpointed(self) -> tuple[dict, dict]:
        """(models, optimizers) as `checkpoint.save` / `load` take them."""
        models = {"policy": self.policy}
        optimizers = {"policy": self.policy_optim}
        if self.token_rm is not None:
            models["token_rm"], optimizers["token_rm"] = self.token_rm, self.rm_optim
        return models, optimizers


def load_policy_weights(arch: ModelArch, model_cfg) -> list:
    """This rank's chunks of the model in `model_cfg.path`, weights read from its safetensors."""
    chunks = build_model(arch, dtype=model_cfg.dtype, recompute=model_cfg.recompute)
    load_hf_weights(chunks, arch, model_cfg.path)
    return chunks


def build_oreal_models(arch: ModelArch, cfg) -> OrealModels:
    dtype = DTYPES[cfg.model.dtype]
    policy = wrap_ddp(load_policy_weights(arch, cfg.model), distributed_optimizer=cfg.optim.distributed_optimizer)
    reference = load_policy_weights(arch, cfg.model)
    for chunk in reference:
        chunk.eval()
        chunk.requires_grad_(False)
    token_rm = rm_optim = None
    if cfg.objective.token_weights != "none":
        token_rm = wrap_ddp(to_token_rm(load_policy_weights(arch, cfg.model)),
                            distributed_optimizer=cfg.rm_optim.distributed_optimizer)
        rm_optim = build_optimizer(token_rm, cfg.rm_optim, dtype)
    models = OrealModels(policy, reference, token_rm, build_optimizer(policy, cfg.optim, dtype), rm_optim)
    if cfg.model.offload_reference:
        models.parked["reference"] = Parked(reference)
    if cfg.model.offload_token_rm and token_rm is not None:
        models.parked["token_rm"] = Parked(token_rm, rm_optim[0])
    return models
