"""The OREAL training loop. One step:
prompts → vLLM rollouts → verdicts → rewards, advantages, selection → reference log-probs and
token-RM weights (+ RM update) → policy update → weight sync + parity probe → metrics → checkpoint."""
import time
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.config import save_resolved, to_dict
from oreal_mega.distributed import init_distributed, shutdown
from oreal_mega.models.ddp import finalize_grads, zero_grads
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.objective import global_counts, token_weights
from oreal_mega.packing import plan_dp_microbatches
from oreal_mega.rollout import RolloutEngineError
from oreal_mega.trainer import checkpoint
from oreal_mega.trainer.batch import micro_batches, packed_responses, pad_to
from oreal_mega.trainer.config import TrainConfig, validate
from oreal_mega.trainer.guards import StepGuard
from oreal_mega.trainer.metrics import MetricsLog, sum_metric
from oreal_mega.trainer.models import build_oreal_models
from oreal_mega.trainer.optim import optimizer_step
from oreal_mega.trainer.passes import actor_step, sequence_logprobs, token_rm_step
from oreal_mega.trainer.rollout_side import RolloutSide, parity_probe, sync_weights
from oreal_mega.trainer.rollout_stage import rollout_and_verify, sampling_for_step
from oreal_mega.trainer.step_data import select, training_flops
from oreal_mega.weights.checkpoint import save_model_checkpoint


def train(cfg: TrainConfig) -> Path:
    validate(cfg)
    arch = parse_arch(read_hf_config(cfg.model.path), where=f"{cfg.model.path}/config.json")
    topo = init_distributed(cfg.parallel, arch.num_layers)
    run_dir = Path(cfg.train.out_dir)
    ckpt_dir = run_dir / "checkpoints"
    if topo.is_main:
        save_resolved(cfg, run_dir)
    models = build_oreal_models(arch, cfg)
    side = RolloutSide.start(cfg, arch, topo)
    log = MetricsLog(run_dir, cfg.train.steps, cfg.train.tensorboard, cfg.train.wandb_project,
                     to_dict(cfg), topo.is_main)
    tp_group = ps.get_tensor_model_parallel_group()
    guard = StepGuard(cfg.train.max_consecutive_bad_steps, cfg.train.zero_reward_warn_steps)

    start = 0
    latest = checkpoint.latest_valid(ckpt_dir)
    if latest is not None:
        start = checkpoint.load(latest, *models.checkpointed())["step"] + 1
        if topo.is_main:
            print(f"resumed from {latest} at step {start}", flush=True)
    models.park()
    sync_weights(side.engine, models.policy, arch)  # the engine must sample from the trained policy

    for step in range(start, cfg.train.steps):
        times, step_start = {}, time.perf_counter()

        def phase(name, began):
            times[f"time_{name}"] = time.perf_counter() - began
            return time.perf_counter()

        t = time.perf_counter()
        records = side.schedule.for_step(step)
        prompt_ids = side.encode(records)
        try:
            groups, verifier_counts = rollout_and_verify(
                side.engine, side.pool, prompt_ids, [r.gold for r in records],
                sampling_for_step(cfg, step, cfg.seed, side.stop_token_ids))
        except RolloutEngineError as err:
            raise RolloutEngineError(f"step {step}: {err} (last checkpoint: "
                                     f"{checkpoint.latest_valid(ckpt_dir)})") from err
        if cfg.rollout.sleep_level:  # free vLLM's GPU memory for training (no-op on CPU)
            side.engine.sleep()
        t = phase("rollout_verify", t)
        trajectories, metrics = select(groups, cfg.objective, cfg.seed, step)
        metrics.update({f"verifier_{k}": v for k, v in verifier_counts.items()})
        guard.observe_pass_rate(metrics["pass_rate"], step)

        if trajectories:
            dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
            plan = plan_dp_microbatches([tr.length for tr in trajectories], dp, cfg.train.micro_batch_tokens)
            length = max(sum(trajectories[i].length for i in mb) for rank in plan for mb in rank)
            mbs = micro_batches(trajectories, plan[dp_rank] or [[]], length)
            counts = global_counts(torch.tensor([len(tr.response_ids) for tr in trajectories]),
                                   torch.tensor([tr.is_positive for tr in trajectories]))
            with models.on_device("reference"):
                ref_logps = sequence_logprobs(models.reference, mbs, tp_group)
            t = phase("reference", t)
            if models.token_rm is not None:
                with models.on_device("token_rm"):
                    zero_grads(models.token_rm)
                    rm_out = token_rm_step(models.token_rm, mbs, counts, cfg.objective)
                    finalize_grads(models.token_rm)
                    if guard.finite(rm_out, models.token_rm, step, "token-RM"):
                        metrics.update(optimizer_step(models.rm_optim, "trm_"))
                weights = [m["weights"] for m in rm_out]
                metrics.update(trm_loss=sum_metric(rm_out, "loss"),
                               trm_accuracy=sum_metric(rm_out, "correct") / max(counts.sequences, 1))
            else:
                weights = [pad_to(token_weights(None, packed_responses(mb), cfg.objective), length) for mb in mbs]
            t = phase("token_rm", t)
            if cfg.objective.actor_is_frozen(step):
                models.policy_optim[1].step(1)  # the warm-up runs during the frozen steps, as in the paper
            else:
                zero_grads(models.policy)
                out = actor_step(models.policy, mbs, ref_logps, weights, counts, cfg.objective, tp_group,
                                 cfg.rollout.temperature)
                finalize_grads(models.policy)
                if step in cfg.train.inject_nan_at_steps:
                    for chunk in models.policy:
                        for buffer in chunk.buffers:
                            buffer.grad_data.fill_(float("nan"))
                tokens = max(sum_metric(out, "tokens"), 1)
                metrics.update(loss=sum_metric(out, "loss"), kl=sum_metric(out, "kl_sum") / tokens,
                               entropy=sum_metric(out, "entropy_sum") / tokens,
                               rollout_logp_gap_mean=sum_metric(out, "rollout_gap_sum") / tokens,
                               rollout_logp_gap_max=sum_metric(out, "rollout_gap_max", reduce="max"))
                metrics["skipped_update"] = not guard.finite(out, models.policy, step, "policy")
                if not metrics["skipped_update"]:
                    metrics.update(optimizer_step(models.policy_optim, "policy_"))
            t = phase("train", t)
            metrics["flops"] = training_flops(arch, trajectories, models.token_rm is not None)

        if cfg.rollout.sleep_level:
            side.engine.wake()
        stats = sync_weights(side.engine, models.policy, arch)
        metrics.update(sync_seconds=stats.seconds, sync_gb=stats.bytes / 1e9, sync_buckets=stats.buckets)
        if cfg.rollout.parity_every and (step + 1) % cfg.rollout.parity_every == 0:
            metrics.update(parity_probe(side, models.policy, arch, cfg.rollout.parity_threshold, tp_group))
        t = phase("sync", t)
        if cfg.train.eval_every and (step + 1) % cfg.train.eval_every == 0:
            metrics["eval_greedy_pass@1"] = side.evaluate(cfg.train.eval_data)
            t = phase("eval", t)
        if cfg.train.save_every and ((step + 1) % cfg.train.save_every == 0 or step + 1 == cfg.train.steps):
            models_ckpt, optims_ckpt = models.checkpointed()
            with models.on_device("token_rm"):
                checkpoint.save(ckpt_dir, step, models_ckpt, optims_ckpt, {"step": step}, cfg.train.keep_last,
                                lambda directory: save_model_checkpoint(models.policy, directory / "policy",
                                                                        cfg.model.path))
        if cfg.train.export_hf_every and (step + 1) % cfg.train.export_hf_every == 0:
            side.export(models.policy, run_dir / "hf" / f"step_{step + 1:06d}")
        phase("save", t)

        step_seconds = time.perf_counter() - step_start
        rollout_tokens = sum(len(g.prompt_ids) + len(s.token_ids) for g in groups for s in g.samples)
        metrics.update(times, step_seconds=step_seconds,
                       tokens_per_s_per_rank=rollout_tokens / step_seconds / topo.world_size,
                       mfu=metrics.pop("flops", 0.0) / step_seconds / topo.world_size / side.peak_flops)
        log.log(step, metrics)
        shown = {"pass": "pass_rate", "kept": "kept_samples", "loss": "loss", "kl": "kl",
                 "trm_acc": "trm_accuracy", "parity": "parity_max_abs"}
        log.progress(step, step_seconds, " ".join(f"{label} {metrics[key]:.4g}" for label, key in shown.items()
                                                  if key in metrics))
    log.close()
    dist.barrier()
    side.close()
    shutdown()
    return run_dir

