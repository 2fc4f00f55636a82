"""The trainer-side Rollout when the engine lives in the training processes (one vLLM engine per
rank, asleep while the learner runs). Per step: the prompt schedule's prompts → vLLM samples →
verdicts from the verifier pool on global rank 0, broadcast to every rank → rewards, advantages
over all K samples of a prompt, selection → a `StepBatch` (and, with `rollout.dump_dir`, the
step's rollout dump). After the update it takes the new weights (wake the weights → sync → wake the
KV cache → parity probe) and runs the periodic held-out evaluation.

The parity probe (every rollout.parity_every steps; the contract is rollout/parity.py's): the engine and
the trainer score the first rollout.parity_probe_prompts prompts, and the engine's weight fingerprints
(combined over its TP group) are compared with those of the tensors the sync just streamed. Logged every
probe: parity_mean_abs, parity_p99_abs, parity_max_abs (|Δ log-prob| per token) and parity_weight_rel_diff.
Wrong weights stop the run naming the parameter group; drift (mean above parity_warn_mean) is warned on
rank 0; a mean above parity_stop_mean with matching weights stops. The levels default by model.dtype. Every
rank judges its own engine replica, and all act on the worst verdict, so all stop together or none does.

With `rollout.engine: replay` the engine serves a dump instead (no vLLM, no policy): prompts,
samples and verdicts all come from `rollout.replay_dir`, and sync, parity and evaluation are
skipped, so the learner side runs where vLLM is not installed."""
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from oreal_mega.errors import UserError
from oreal_mega.objective import Rewards, advantages, rewards_from_verdicts, select_trajectories
from oreal_mega.rollout import SamplingConfig
from oreal_mega.rollout.base import Sample
from oreal_mega.rollout.dump import StepGroup, write_step
from oreal_mega.rollout.parity import ParityLevels, PolicyParityError, SentFingerprints, judge_parity, worst_verdict
from oreal_mega.rollout.prompts import encode_prompts, read_prompts
from oreal_mega.tasks.oracle import correct_solutions, first_error_token, response_token_texts
from oreal_mega.trainer.batch import Trajectory
from oreal_mega.trainer.contract import PolicyWeights, StepBatch
from oreal_mega.trainer.guards import ZeroRewardWatch
from oreal_mega.trainer.prompt_schedule import PromptSchedule


@dataclass
class PromptGroup:
    prompt_ids: list[int]
    gold: str
    samples: list[Sample]
    verdicts: list[str]  # verifier status per sample


class ColocatedRollout:
    def __init__(self, cfg, topo):
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        records = read_prompts(Path(cfg.data.prompts), cfg.data.format)
        self.schedule = PromptSchedule(records, cfg.data.prompts_per_step, cfg.objective,
                                       cfg.data.difficulty_balance, cfg.seed, cfg.data.prompts)
        self.engine = _build_engine(cfg)
        self.live = self.engine.samples_from_policy  # False under replay
        self.pool = verifier_pool(cfg.verifier) if self.live and topo.is_main else None
        if not self.live and topo.is_main:
            print(f"rollout.engine=replay: samples and verdicts from {cfg.rollout.replay_dir}; weight sync, "
                  "parity probe and evaluation are skipped", flush=True)
        r = cfg.rollout
        self.probe_ids = self._encode(records[:r.parity_probe_prompts])  # fixed: the first prompts of the file
        self.parity_levels = ParityLevels.for_dtype(cfg.model.dtype, r.parity_warn_mean, r.parity_stop_mean,
                                                    r.parity_fingerprint_tolerance)
        self.zero_reward = ZeroRewardWatch(cfg.train.zero_reward_warn_steps)

    def _encode(self, records) -> list[list[int]]:
        return encode_prompts(self.tokenizer, records, self.cfg.data.chat_template, self.cfg.data.system_prompt)

    def _sampling(self, step: int) -> SamplingConfig:
        r = self.cfg.rollout
        return SamplingConfig(n=r.n, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                              max_tokens=r.max_tokens, seed=(self.cfg.seed * 1_000_003 + step) % 2**31,
                              stop_token_ids=(self.tokenizer.eos_token_id,))

    def collect(self, step: int) -> StepBatch:
        records = []
        if self.live:
            records = self.schedule.for_step(step)
            prompt_ids, golds = self._encode(records), [r.gold for r in records]
        else:
            prompt_ids, golds = self.engine.prompts_for_step(step)
        samples = self.engine.generate(prompt_ids, self._sampling(step), step=step)
        statuses, verifier_counts = self._judge(samples, golds, [r.question for r in records], step)
        groups = [PromptGroup(ids, gold, group, verdicts)
                  for ids, gold, group, verdicts in zip(prompt_ids, golds, samples, statuses)]
        if self.cfg.rollout.sleep_level:  # free vLLM's GPU memory for training (no-op on CPU)
            self.engine.sleep()
        rewards = rewards_from_verdicts([v for g in groups for v in g.verdicts], len(samples[0]), self.cfg.objective)
        if self.cfg.rollout.dump_dir:
            write_step(self.cfg.rollout.dump_dir, step,
                       [StepGroup(g.prompt_ids, g.gold, g.samples, g.verdicts, row)
                        for g, row in zip(groups, rewards.rewards.tolist())])
        trajectories, metrics = select(groups, rewards, self.cfg.objective, self.cfg.seed, step,
                                       self._oracle(records, groups))
        metrics.update({f"verifier_{k}": v for k, v in verifier_counts.items()})
        self.zero_reward.observe(metrics["pass_rate"], step)
        tokens = sum(len(g.prompt_ids) + len(s.token_ids) for g in groups for s in g.samples)
        return StepBatch(step, trajectories, metrics, tokens)

    def _oracle(self, records, groups: list[PromptGroup]):
        """(prompt, sample) → the task oracle's first erroneous response token (-1: none located),
        for prompt records that carry their canonical solution (the synthetic task's); else None."""
        if not all(_has_task_solution(r) for r in records) or not records:
            if self.cfg.objective.token_weights == "oracle":
                raise UserError("objective.token_weights=oracle needs prompt records with the synthetic task's "
                                f"'solution' (its rl_prompts.jsonl); {self.cfg.data.prompts} has none")
            return None

        def locate(p: int, j: int) -> int:
            sample = groups[p].samples[j]
            found = first_error_token(records[p].extra["solution"],
                                      response_token_texts(self.tokenizer, sample.token_ids),
                                      sample.finish_reason == "stop")
            return -1 if found is None else found
        return locate

    def _judge(self, samples: list[list[Sample]], golds: list[str], questions: list[str], step: int
               ) -> tuple[list[list[str]], dict]:
        """Verifier statuses per prompt and sample, and the verifier's counters of this call: judged
        by the pool on global rank 0 (questions go to the optional model judge) and broadcast, or
        (replay) read from the dump."""
        if not self.live:
            return self.engine.verdicts_for_step(step), {}
        flat = [s for group in samples for s in group]
        payload = [None]
        if dist.get_rank() == 0:
            before = self.pool.counters()
            verdicts = self.pool.verify_batch([s.text for s in flat],
                                              [g for g, group in zip(golds, samples) for _ in group],
                                              [s.finish_reason == "stop" for s in flat],
                                              [q for q, group in zip(questions, samples) for _ in group])
            after = self.pool.counters()
            payload = [([v.status for v in verdicts], {k: after[k] - before.get(k, 0) for k in after})]
        dist.broadcast_object_list(payload, src=0)
        statuses, counters = payload[0]
        starts = [sum(len(group) for group in samples[:i]) for i in range(len(samples))]
        return [statuses[start:start + len(group)] for start, group in zip(starts, samples)], counters

    def load_weights(self, policy: PolicyWeights, step: int | None) -> dict:
        """Wake the engine's weights, sync, then wake its KV cache (so the weights and the KV cache are
        never both held while the trainer's memory is being returned), then the parity probe when due at
        `step`, fingerprinting the tensors as the sync streams them."""
        if not self.live:
            return {}
        if self.cfg.rollout.sleep_level:
            self.engine.wake(("weights",))
        every = self.cfg.rollout.parity_every
        sent = SentFingerprints() if step is not None and every and (step + 1) % every == 0 else None
        tensors = policy.hf_tensors()
        stats = self.engine.update_weights(tensors if sent is None else sent.watch(tensors))
        if self.cfg.rollout.sleep_level:
            self.engine.wake(("kv_cache",))
        metrics = {"sync_seconds": stats.seconds, "sync_gb": stats.bytes / 1e9, "sync_buckets": stats.buckets}
        if sent is not None:
            metrics.update(self._parity_probe(policy, sent))
        return metrics

    def _parity_probe(self, policy: PolicyWeights, sent: SentFingerprints) -> dict:
        """Collective: judge this rank's engine (log-probs of the probe prompts, weight fingerprints against
        the `sent` ones), then act on the worst verdict of all ranks: raise PolicyParityError, or warn on
        rank 0 about drift. Returns the worst verdict's metrics."""
        engine_logp = self.engine.prompt_logprobs(self.probe_ids)
        trainer_logp = [policy.logprobs(ids) for ids in self.probe_ids]
        verdict = judge_parity(engine_logp, trainer_logp, self.parity_levels, sent.result(),
                               self.engine.weight_fingerprints())
        verdicts = [None] * dist.get_world_size()
        dist.all_gather_object(verdicts, verdict)
        rank, verdict = worst_verdict(verdicts)
        if verdict.stops:
            raise PolicyParityError(f"rank {rank}'s rollout engine: {verdict.message()}")
        if verdict.outcome == "drift" and dist.get_rank() == 0:
            warnings.warn(f"rank {rank}'s rollout engine: {verdict.message()}")
        return verdict.metrics()

    def maybe_evaluate(self, step: int) -> dict:
        """Held-out greedy pass@1 of the engine's current policy, every train.eval_every steps: generated
        on every rank (collective), verified on global rank 0 only (`evaluate` broadcasts) by the pool that
        judges the rollouts, so with the same verifier.backend, fallback and judge."""
        from oreal_mega.evaluation.evaluate import evaluate

        train = self.cfg.train
        if not self.live or not train.eval_every or (step + 1) % train.eval_every:
            return {}
        result = evaluate(self.engine, Path(train.eval_data), tokenizer=self.tokenizer, k=0,
                          max_tokens=self.cfg.rollout.max_tokens, system_prompt=self.cfg.data.system_prompt,
                          chat=self.cfg.data.chat_template, verifier=self.pool)
        return {"eval_greedy_pass@1": result.greedy_pass_at_1}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.engine.shutdown()


def verifier_pool(verifier):
    """The trainer's VerifierPool for the `verifier` config section: its workers, timeout, backend, fallback
    and optional model judge."""
    from oreal_mega.verifier import VerifierPool
    from oreal_mega.verifier.backends import verify_function

    return VerifierPool(verifier.workers, verifier.timeout_s, judge=verifier.judge,
                        verify_fn=verify_function(verifier.backend, verifier.fallback))


def _has_task_solution(record) -> bool:
    """Whether the record carries a canonical solution the synthetic task's oracle can read."""
    try:
        return bool(correct_solutions(record.extra.get("solution") or ""))
    except ValueError:
        return False


def _build_engine(cfg):
    r = cfg.rollout
    if r.engine == "replay":
        from oreal_mega.rollout.replay_engine import ReplayRolloutEngine

        return ReplayRolloutEngine(r.replay_dir)
    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine

    return VLLMRolloutEngine(cfg.model.path, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=r.max_model_len,
                             bucket_bytes=r.bucket_mb << 20, rollout_tp=r.rollout_tp,
                             cpu_kv_cache_gib=r.cpu_kv_cache_gib, sleep_level=r.sleep_level,
                             gpu_memory_utilization=r.gpu_memory_utilization, enforce_eager=r.enforce_eager)


def select(groups: list[PromptGroup], rewards: Rewards, cfg, seed: int, step: int,
           first_error=None) -> tuple[list[Trajectory], dict]:
    """Advantages over all K samples of each prompt, then the trajectory filter / pair selection
    (seeded by the step, identical on every rank); returns the kept trajectories and the metrics.
    `first_error(prompt, sample)`, when given, marks each kept wrong trajectory's first error."""
    k = len(groups[0].samples)
    adv = advantages(rewards.rewards, cfg.advantage_type)
    generator = torch.Generator().manual_seed(cfg.selection_seed + seed * 7_919 + step)
    kept = select_trajectories(rewards.is_correct, cfg, generator).tolist()
    trajectories = []
    for flat in kept:
        p, j = divmod(flat, k)
        sample = groups[p].samples[j]
        correct = bool(rewards.is_correct[p, j])
        error = first_error(p, j) if first_error is not None and not correct else -1
        trajectories.append(Trajectory(groups[p].prompt_ids, sample.token_ids, correct, float(adv[p, j]),
                                       float(rewards.pass_rate[p]), sample.logprobs.tolist(), p, error))
    lengths = torch.tensor([len(s.token_ids) for g in groups for s in g.samples], dtype=torch.float32)
    metrics = {
        "pass_rate": rewards.is_correct.float().mean().item(),
        "reward_mean": rewards.rewards.mean().item(),
        "prompts": len(groups), "kept_prompts": len({flat // k for flat in kept}),
        "kept_samples": len(trajectories),
        "n_pos": sum(t.is_positive for t in trajectories),
        "n_neg": sum(not t.is_positive for t in trajectories),
        "response_len_mean": lengths.mean().item(), "response_len_max": lengths.max().item(),
        "truncation_rate": rewards.verdict_counts["truncated"] / lengths.numel(),
        **{f"verdict_{name}": count for name, count in rewards.verdict_counts.items()},
    }
    return trajectories, metrics
