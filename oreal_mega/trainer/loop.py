"""The OREAL training loop. Per step: collect a batch (rollouts, verdicts, selection), learn from it
(reference → token-RM → policy), load the new weights into the rollout engine, maybe save, log.
Before every step the ranks agree whether to stop early (trainer/preemption.py)."""
from pathlib import Path

import torch.distributed as dist

from oreal_mega.config import save_resolved, to_dict
from oreal_mega.distributed import init_distributed, shutdown
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.rollout import RolloutEngineError
from oreal_mega.trainer.checkpointer import Checkpointer
from oreal_mega.trainer.colocated_rollout import ColocatedRollout
from oreal_mega.trainer.config import TrainConfig, validate
from oreal_mega.trainer.learner import Learner
from oreal_mega.trainer.metrics import MetricsLog, PhaseTimes
from oreal_mega.trainer.preemption import StopRequests, stop_early
from oreal_mega.trainer.run_lock import lock_run

SHOWN = {"pass": "pass_rate", "kept": "kept_samples", "loss": "loss", "kl": "kl", "trm_acc": "trm_accuracy",
         "parity": "parity_max_abs"}  # the progress line


def train(cfg: TrainConfig) -> tuple[Path, bool]:
    """(the run directory, whether every step ran: False when the run stopped early and saved)."""
    validate(cfg)
    stop = StopRequests(cfg.train.time_limit)  # from here on SIGTERM / SIGUSR1 mean "save and stop"
    arch = parse_arch(read_hf_config(cfg.model.path), where=f"{cfg.model.path}/config.json")
    topo = init_distributed(cfg.parallel, arch.num_layers, deterministic=cfg.train.deterministic)
    run_dir = Path(cfg.train.out_dir)
    lock = lock_run(run_dir)  # before anything is written: a second run on run_dir stops here
    if topo.is_main:
        save_resolved(cfg, run_dir)
    learner = Learner(cfg, arch, topo.device)
    rollout = ColocatedRollout(cfg, topo)
    checkpointer = Checkpointer(run_dir, *learner.checkpointed(), save_every=cfg.train.save_every,
                                keep_last=cfg.train.keep_last, total_steps=cfg.train.steps,
                                write_more=learner.save_policy, resident=lambda: learner.on_device("token_rm"),
                                export=learner.export_hf, export_every=cfg.train.export_hf_every)
    start = checkpointer.resume()
    log = MetricsLog(run_dir, cfg.train.steps, cfg.train.tensorboard, cfg.train.wandb_project, to_dict(cfg),
                     topo.is_main, start_step=start)  # steps ≥ start logged by a killed run are dropped
    learner.park()
    rollout.load_weights(learner.policy_weights(), step=None)  # the engine must sample from the trained policy

    last_saved = start - 1  # the models hold that checkpoint's state (or a fresh run's)
    reason = None
    for step in range(start, cfg.train.steps):
        reason = stop.agreed(topo.device)
        if reason:
            stop_early(checkpointer, step, last_saved, reason, topo.is_main)
            break
        times = PhaseTimes(topo.device)
        with times.phase("rollout_verify"):
            try:
                batch = rollout.collect(step)
            except RolloutEngineError as err:
                raise RolloutEngineError(f"step {step}: {err} (last checkpoint: {checkpointer.latest()})") from err
        metrics = batch.metrics | learner.learn(batch, times)
        with times.phase("sync"):
            metrics |= rollout.load_weights(learner.policy_weights(), step)
        with times.phase("eval"):
            metrics |= rollout.maybe_evaluate(step)
        with times.phase("save"):
            if checkpointer.maybe_save(step):
                last_saved = step

        seconds = times.total()
        save_seconds = times.seconds["time_save"]
        stop.measured(seconds - save_seconds, save_seconds if last_saved == step else None)
        metrics |= times.seconds | {"step_seconds": seconds,
                                    "tokens_per_s_per_rank": batch.rollout_tokens / seconds / topo.world_size}
        log.log(step, metrics)
        log.progress(step, seconds, " ".join(f"{label} {metrics[key]:.4g}" for label, key in SHOWN.items()
                                             if key in metrics))
    log.close()
    dist.barrier()
    lock.release()
    rollout.close()
    shutdown()
    return run_dir, not reason
