"""The Learner: the three megatron models of an OREAL run — the trained policy, the frozen reference
and the token-level reward model, all in the same TP/PP layout and all initialised from the policy
checkpoint — with their optimizers, host offload and the non-finite guard.

`learn(batch)` runs one step's passes over the same packed micro-batches: reference log-probs →
token-RM (ω± from its pre-update forward, then its own update) → the policy update with the fused
loss, and returns the step's statistics. `policy_weights()` is what the Rollout syncs from."""
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.models.builder import DTYPES
from oreal_mega.models.ddp import finalize_grads, wrap_ddp, zero_grads
from oreal_mega.models.flops import model_flops, peak_flops
from oreal_mega.models.offload import Parked
from oreal_mega.objective import global_counts, pair_accuracy
from oreal_mega.packing import plan_dp_microbatches
from oreal_mega.trainer.batch import Trajectory, micro_batches
from oreal_mega.trainer.contract import StepBatch
from oreal_mega.trainer.guards import StepGuard
from oreal_mega.trainer.metrics import PhaseTimes, sum_metric
from oreal_mega.trainer.optim import build_optimizer, optimizer_step
from oreal_mega.trainer.passes import actor_step, sequence_logprobs, token_rm_step
from oreal_mega.trainer.token_rm import to_token_rm
from oreal_mega.weights.hf_export import export_hf, iter_hf_tensors
from oreal_mega.weights.hf_load import build_from_hf
from oreal_mega.weights.model_checkpoint import save_model_checkpoint


def _schedule(optim_cfg, cfg):
    """`optim_cfg` with the LR schedule's length: its own total_steps, or train.steps when that is 0."""
    return optim_cfg if optim_cfg.total_steps else replace(optim_cfg, total_steps=cfg.train.steps)


class Learner:
    def __init__(self, cfg, arch, device: torch.device):
        self.cfg, self.arch = cfg, arch
        dtype = DTYPES[cfg.model.dtype]
        self.policy = wrap_ddp(build_from_hf(arch, cfg.model),
                               distributed_optimizer=cfg.optim.distributed_optimizer)
        self.policy_optimizer, self.policy_scheduler = build_optimizer(self.policy, _schedule(cfg.optim, cfg),
                                                                       dtype)
        self.reference = build_from_hf(arch, cfg.model)
        for chunk in self.reference:
            chunk.eval()
            chunk.requires_grad_(False)
        self.token_rm = self.rm_optimizer = self.rm_scheduler = None
        if cfg.objective.token_weights != "none":
            self.token_rm = wrap_ddp(to_token_rm(build_from_hf(arch, cfg.model),
                                                 cfg.objective.trm_input == "hidden+reference_logprob"),
                                     distributed_optimizer=cfg.rm_optim.distributed_optimizer)
            self.rm_optimizer, self.rm_scheduler = build_optimizer(self.token_rm, _schedule(cfg.rm_optim, cfg), dtype)
        self.parked: dict[str, Parked] = {}  # "reference" / "token_rm" when offloaded between uses
        if cfg.model.offload_reference:
            self.parked["reference"] = Parked(self.reference)
        if cfg.model.offload_token_rm and self.token_rm is not None:
            self.parked["token_rm"] = Parked(self.token_rm, self.rm_optimizer)
        self.guard = StepGuard(cfg.train.max_consecutive_bad_steps)
        self.tp_group = ps.get_tensor_model_parallel_group()
        self.peak_flops, peak_name = peak_flops(device, dtype)
        if dist.get_rank() == 0:
            print(f"mfu: training FLOPs / (reference + token-RM + policy seconds) / {self.peak_flops / 1e12:.1f} "
                  f"TFLOP/s per rank, the {peak_name}", flush=True)

    # -- host offload ----------------------------------------------------------------------

    def park(self) -> None:
        """Move the offloaded models to host memory (after building or resuming)."""
        for parked in self.parked.values():
            parked.offload()

    def on_device(self, name: str):
        """Context in which model `name` is on its device; parked again afterwards if offloaded."""
        parked = self.parked.get(name)
        return parked.loaded() if parked is not None else nullcontext()

    # -- one step --------------------------------------------------------------------------

    def learn(self, batch: StepBatch, times: PhaseTimes) -> dict:
        """Collective: the step's reference, token-RM and policy passes; returns their statistics."""
        if not batch.trajectories:
            return {}
        step, trajectories = batch.step, batch.trajectories
        mbs = self._micro_batches(trajectories)
        counts = global_counts(torch.tensor([len(tr.response_ids) for tr in trajectories]),
                               torch.tensor([tr.is_positive for tr in trajectories]))
        stats = {}
        with times.phase("reference"), self.on_device("reference"):
            ref_logps = sequence_logprobs(self.reference, mbs, self.tp_group, self.cfg.rollout.temperature)
        with times.phase("token_rm"):
            weights = (None if self.token_rm is None
                       else self._token_rm_update(mbs, ref_logps, counts, step, stats, trajectories))
        with times.phase("train"):
            if self.cfg.objective.actor_is_frozen(step):
                self.policy_scheduler.step(1)  # the warm-up runs during the frozen steps, as in the paper
            else:
                stats.update(self._policy_update(mbs, ref_logps, weights, counts, step))
        seconds = sum(times.seconds.get(f"time_{name}", 0.0) for name in ("reference", "token_rm", "train"))
        policy_trained = not self.cfg.objective.actor_is_frozen(step)
        stats["mfu"] = (self._training_flops(trajectories, policy_trained) / seconds / dist.get_world_size()
                        / self.peak_flops)
        return stats

    def _micro_batches(self, trajectories: list[Trajectory]):
        """This data-parallel rank's packed micro-batches, all padded to the longest of any rank."""
        dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
        plan = plan_dp_microbatches([tr.length for tr in trajectories], dp, self.cfg.train.micro_batch_tokens)
        length = max(sum(trajectories[i].length for i in mb) for rank in plan for mb in rank)
        return micro_batches(trajectories, plan[dp_rank], length)  # an empty entry: an all-padding micro-batch

    def _token_rm_update(self, mbs, ref_logps, counts, step: int, stats: dict, trajectories) -> list[torch.Tensor]:
        with self.on_device("token_rm"):
            zero_grads(self.token_rm)
            out = token_rm_step(self.token_rm, mbs, ref_logps, counts, self.cfg.objective)
            finalize_grads(self.token_rm)
            if self.guard.finite(out, self.token_rm, step, "token-RM"):
                stats.update(optimizer_step((self.rm_optimizer, self.rm_scheduler), "trm_"))
        stats.update(trm_loss=sum_metric(out, "loss"),
                     trm_accuracy=sum_metric(out, "correct") / max(counts.sequences, 1),
                     **self._rm_diagnostics(out, trajectories))
        return [m["weights"] for m in out]

    def _rm_diagnostics(self, out: list[dict], trajectories: list[Trajectory]) -> dict:
        """Collective. trm_pair_accuracy: how often the RM's sequence logit ranks a prompt's positive
        above its negative; trm_error_auc: how well its q drops at the task oracle's first error
        (objective/rm_diagnostics.py), when the oracle located errors this step."""
        scores = torch.zeros(len(trajectories), dtype=torch.float64,
                             device=torch.cuda.current_device() if torch.cuda.is_available() else "cpu")
        if ps.get_tensor_model_parallel_rank() == 0:  # every TP rank holds the same values
            for m in out:
                scores.index_add_(0, m["index"].to(scores.device), m["sequence_logit"].double())
        dist.all_reduce(scores)  # each kept sequence lives on one DP rank of the last stage
        wins, pairs = pair_accuracy(scores.cpu(), torch.tensor([t.is_positive for t in trajectories]),
                                    torch.tensor([t.prompt for t in trajectories]))
        stats = {"trm_pair_accuracy": (wins / pairs).item()} if pairs > 0 else {}
        measured = sum_metric(out, "error_responses")
        if measured:
            stats.update(trm_error_auc=sum_metric(out, "error_auc_sum") / measured, trm_error_responses=measured)
        return stats

    def _policy_update(self, mbs, ref_logps, weights, counts, step: int) -> dict:
        zero_grads(self.policy)
        out = actor_step(self.policy, mbs, ref_logps, weights, counts, self.cfg.objective, self.tp_group,
                         self.cfg.rollout.temperature)
        finalize_grads(self.policy)
        tokens = max(sum_metric(out, "tokens"), 1)
        stats = {"loss": sum_metric(out, "loss"), "kl": sum_metric(out, "kl_sum") / tokens,
                 "entropy": sum_metric(out, "entropy_sum") / tokens,
                 "rollout_logp_gap_mean": sum_metric(out, "rollout_gap_sum") / tokens,
                 "rollout_logp_gap_max": sum_metric(out, "rollout_gap_max", reduce="max"),
                 "rollout_kl_k3": sum_metric(out, "rollout_k3_sum") / tokens}
        stats["skipped_update"] = not self.guard.finite(out, self.policy, step, "policy")
        if not stats["skipped_update"]:
            stats.update(optimizer_step((self.policy_optimizer, self.policy_scheduler), "policy_"))
        return stats

    def _training_flops(self, trajectories: list[Trajectory], policy_trained: bool) -> float:
        """The passes that ran: reference forward (a third of a forward+backward), token-RM forward+backward
        when there is one, policy forward+backward unless the actor was frozen this step."""
        lengths = [t.length for t in trajectories]
        per_pass = model_flops(self.arch, sum(lengths), lengths)
        return per_pass * (1 / 3 + (self.token_rm is not None) + policy_trained)

    # -- what the Rollout and the Checkpointer see ------------------------------------------

    def policy_weights(self) -> "PolicySnapshot":
        return PolicySnapshot(self)

    def checkpointed(self) -> tuple[dict, dict]:
        """(models, optimizers) as the Checkpointer saves and restores them."""
        models = {"policy": self.policy}
        optimizers = {"policy": (self.policy_optimizer, self.policy_scheduler)}
        if self.token_rm is not None:
            models["token_rm"] = self.token_rm
            optimizers["token_rm"] = (self.rm_optimizer, self.rm_scheduler)
        return models, optimizers

    def save_policy(self, directory) -> None:
        """Collective: the policy as a layout-independent model checkpoint in `directory`/policy."""
        save_model_checkpoint(self.policy, directory / "policy", self.cfg.model.path)

    def export_hf(self, directory) -> None:
        """Collective: the policy as an HF directory."""
        export_hf(self.policy, self.arch, directory, self.cfg.model.path, overwrite=True)


class PolicySnapshot:
    """The learner's policy as `contract.PolicyWeights`."""

    def __init__(self, learner: Learner):
        self.learner = learner

    def hf_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter_hf_tensors(self.learner.policy, self.learner.arch)

    def logprobs(self, token_ids: list[int]) -> torch.Tensor:
        probe = Trajectory(token_ids[:1], token_ids[1:], True, 0.0, 0.0)
        [mb] = micro_batches([probe], [[0]], len(token_ids))
        outputs = sequence_logprobs(self.learner.policy, [mb], self.learner.tp_group)
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        logp = torch.zeros(len(token_ids) - 1, dtype=torch.float64, device=device)
        if outputs and ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
            logp += outputs[0][: len(token_ids) - 1].double()
        dist.all_reduce(logp)  # exactly one rank (the last stage's first TP/DP rank) contributed
        return logp.float().cpu()
