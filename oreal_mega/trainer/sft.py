"""Supervised fine-tuning of the megatron policy (`oreal-mega sft`, see sft_cli.py).

Data: JSONL with `prompt` + `response`, or chat `messages` (the last assistant message is the
target). Loss on response tokens only, normalised by the step's global response-token count (so
it does not depend on micro-batching or DP); sequences packed into micro-batches; checkpoints,
exact resume, early stops (SIGTERM / SIGUSR1, train.time_limit), metrics and HF export as in `train`."""
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.errors import UserError
from oreal_mega.config import save_resolved, to_dict
from oreal_mega.distributed import init_distributed, shutdown
from oreal_mega.jsonl import read_objects
from oreal_mega.kernels import fused_oreal_loss
from oreal_mega.models.builder import DTYPES
from oreal_mega.models.ddp import finalize_grads, wrap_ddp, zero_grads
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.models.pipeline import forward_backward
from oreal_mega.packing import plan_dp_microbatches
from oreal_mega.trainer.batch import Trajectory, micro_batches
from oreal_mega.trainer.checkpointer import Checkpointer
from oreal_mega.trainer.config import SFTConfig
from oreal_mega.trainer.guards import StepGuard
from oreal_mega.trainer.metrics import MetricsLog, sum_metric
from oreal_mega.trainer.optim import build_optimizer, optimizer_step
from oreal_mega.trainer.preemption import StopRequests, stop_early
from oreal_mega.trainer.run_lock import lock_run
from oreal_mega.weights.hf_export import export_hf
from oreal_mega.weights.hf_load import build_from_hf


def read_examples(path: Path, tokenizer, system_prompt: str | None, max_length: int) -> list[Trajectory]:
    """Tokenised (prompt, response) pairs; a malformed line is an error naming the line."""
    examples = []
    for number, item in read_objects(path, "SFT data file"):
        if isinstance(item.get("messages"), list) and item["messages"]:
            messages = item["messages"]
            if messages[-1].get("role") != "assistant":
                raise UserError(f"{path}:{number}: the last message must be the assistant's")
            context, target = messages[:-1], messages[-1].get("content")
        elif isinstance(item.get("prompt"), str):
            context, target = [{"role": "user", "content": item["prompt"]}], item.get("response")
        else:
            raise UserError(f"{path}:{number}: expected 'prompt' + 'response' or a 'messages' list")
        if not isinstance(target, str) or not target:
            raise UserError(f"{path}:{number}: the response must be a non-empty string")
        if system_prompt and context[0].get("role") != "system":
            context = [{"role": "system", "content": system_prompt}] + context
        prompt = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(prompt_ids) + len(response_ids) > max_length:
            raise UserError(f"{path}:{number}: {len(prompt_ids) + len(response_ids)} tokens exceed "
                            f"data.max_length={max_length}")
        examples.append(Trajectory(prompt_ids, response_ids, True, 1.0, 0.0))
    if not examples:
        raise UserError(f"SFT data file {path} holds no examples")
    return examples


def step_indices(num_examples: int, per_step: int, seed: int, step: int) -> list[int]:
    """The examples of a step: a seeded shuffle per epoch, position given by the step."""
    epoch, offset = divmod(step * per_step, num_examples)
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
    return order[offset: offset + per_step]


def sft_loss(tokens: int, tp_group):
    """The loss_fn of `forward_backward`: the response tokens' negative log-likelihood / `tokens` (the
    step's response tokens on all ranks), and per micro-batch the tokens predicted with p > ½."""
    def loss_fn(hidden, model, mb):
        labels = mb.fields["labels"]
        loss, diag = fused_oreal_loss(hidden, model.lm_head_weight(), labels, coef_logp=-1.0 / tokens,
                                      tp_group=tp_group, weight_grad_into=model.lm_head_main_grad(),
                                      num_labelled=mb.num_labelled)
        correct = (diag.logp > -0.6931) & (labels != -100)  # a masked sum, not indexing: no host sync
        return loss, {"loss": loss.detach(), "correct_tokens": correct.sum()}

    return loss_fn


def sft(cfg: SFTConfig) -> tuple[Path, bool]:
    """(the run directory, whether every step ran: False when the run stopped early and saved)."""
    from transformers import AutoTokenizer

    stop = StopRequests(cfg.train.time_limit)  # from here on SIGTERM / SIGUSR1 mean "save and stop"
    arch = parse_arch(read_hf_config(cfg.model.path), where=f"{cfg.model.path}/config.json")
    topo = init_distributed(cfg.parallel, arch.num_layers)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    examples = read_examples(Path(cfg.data.path), tokenizer, cfg.data.system_prompt, cfg.data.max_length)
    per_step = min(cfg.data.sequences_per_step, len(examples))
    steps = cfg.data.epochs * (len(examples) // per_step)
    optim_cfg = cfg.optim if cfg.optim.total_steps else replace(cfg.optim, total_steps=steps)
    run_dir = Path(cfg.train.out_dir)
    lock = lock_run(run_dir)  # before anything is written: a second run on run_dir stops here
    if topo.is_main:
        save_resolved(cfg, run_dir)
    policy = wrap_ddp(build_from_hf(arch, cfg.model))
    optim = build_optimizer(policy, optim_cfg, DTYPES[cfg.model.dtype])
    checkpointer = Checkpointer(run_dir, {"policy": policy}, {"policy": optim}, save_every=cfg.train.save_every,
                                keep_last=cfg.train.keep_last, total_steps=steps)
    start = checkpointer.resume()
    log = MetricsLog(run_dir, steps, cfg.train.tensorboard, cfg.train.wandb_project, to_dict(cfg), topo.is_main,
                     start_step=start)
    guard = StepGuard(cfg.train.max_consecutive_bad_steps)
    tp_group = ps.get_tensor_model_parallel_group()
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()

    last_saved, reason = start - 1, None
    for step in range(start, steps):
        reason = stop.agreed(topo.device)
        if reason:
            stop_early(checkpointer, step, last_saved, reason, topo.is_main)
            break
        began = time.perf_counter()
        batch = [examples[i] for i in step_indices(len(examples), per_step, cfg.seed, step)]
        plan = plan_dp_microbatches([t.length for t in batch], dp, cfg.train.micro_batch_tokens)
        length = max(sum(batch[i].length for i in mb) for rank in plan for mb in rank)
        mbs = micro_batches(batch, plan[dp_rank], length)
        tokens = sum(len(t.response_ids) for t in batch)
        zero_grads(policy)
        out = forward_backward(policy, mbs, sft_loss(tokens, tp_group))
        finalize_grads(policy)
        metrics = {"loss": sum_metric(out, "loss"), "tokens": tokens,
                   "token_accuracy_p>0.5": sum_metric(out, "correct_tokens") / tokens}
        if guard.finite(out, policy, step, "SFT"):
            metrics.update(optimizer_step(optim, ""))
        save_began = time.perf_counter()
        if checkpointer.maybe_save(step):
            last_saved = step
        seconds, save_seconds = time.perf_counter() - began, time.perf_counter() - save_began
        stop.measured(seconds - save_seconds, save_seconds if last_saved == step else None)
        metrics.update(step_seconds=seconds, tokens_per_s_per_rank=sum(t.length for t in batch) / seconds / topo.world_size)
        log.log(step, metrics)
        log.progress(step, seconds, f"loss {metrics['loss']:.4f}")
    log.close()
    if cfg.train.export_hf and not reason:
        export_hf(policy, arch, run_dir / "hf", cfg.model.path, overwrite=True)
    dist.barrier()
    lock.release()
    shutdown()
    return run_dir, not reason

