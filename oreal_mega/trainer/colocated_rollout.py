"""The trainer-side Rollout when the vLLM engine lives in the training processes (one engine per
rank, asleep while the learner runs). Per step: the prompt schedule's prompts → vLLM samples →
verdicts from the verifier pool on global rank 0, broadcast to every rank → rewards, advantages
over all K samples of a prompt, selection → a `StepBatch`. After the update it takes the new
weights (sync + parity probe) and runs the periodic held-out evaluation."""
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from oreal_mega.objective import advantages, rewards_from_verdicts, select_trajectories
from oreal_mega.rollout import SamplingConfig
from oreal_mega.rollout.base import Sample
from oreal_mega.rollout.parity import check_parity, trainer_fingerprints
from oreal_mega.rollout.prompts import encode_prompts, read_prompts
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

        from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
        from oreal_mega.verifier import VerifierPool

        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        records = read_prompts(Path(cfg.data.prompts))
        self.schedule = PromptSchedule(records, cfg.data.prompts_per_step, cfg.objective,
                                       cfg.data.difficulty_balance, cfg.seed, cfg.data.prompts)
        self.engine = VLLMRolloutEngine(
            cfg.model.path, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.rollout.max_model_len,
            bucket_bytes=cfg.rollout.bucket_mb << 20, rollout_tp=cfg.rollout.rollout_tp,
            cpu_kv_cache_gib=cfg.rollout.cpu_kv_cache_gib, sleep_level=cfg.rollout.sleep_level or 1,
            gpu_memory_utilization=cfg.rollout.gpu_memory_utilization)
        self.pool = VerifierPool(cfg.verifier.workers, cfg.verifier.timeout_s) if topo.is_main else None
        self.probe_ids = self._encode(records[:1])[0]  # a fixed probe: the first prompt of the file
        self.zero_reward = ZeroRewardWatch(cfg.train.zero_reward_warn_steps)

    def _encode(self, records) -> list[list[int]]:
        return encode_prompts(self.tokenizer, records, self.cfg.data.chat_template, self.cfg.data.system_prompt)

    def _sampling(self, step: int) -> SamplingConfig:
        r = self.cfg.rollout
        return SamplingConfig(n=r.n, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                              max_tokens=r.max_tokens, seed=(self.cfg.seed * 1_000_003 + step) % 2**31,
                              stop_token_ids=(self.tokenizer.eos_token_id,))

    def collect(self, step: int) -> StepBatch:
        records = self.schedule.for_step(step)
        groups, verifier_counts = self._generate_and_verify(self._encode(records), [r.gold for r in records],
                                                            self._sampling(step))
        if self.cfg.rollout.sleep_level:  # free vLLM's GPU memory for training (no-op on CPU)
            self.engine.sleep()
        trajectories, metrics = select(groups, self.cfg.objective, self.cfg.seed, step)
        metrics.update({f"verifier_{k}": v for k, v in verifier_counts.items()})
        self.zero_reward.observe(metrics["pass_rate"], step)
        tokens = sum(len(g.prompt_ids) + len(s.token_ids) for g in groups for s in g.samples)
        return StepBatch(step, trajectories, metrics, tokens)

    def _generate_and_verify(self, prompt_ids: list[list[int]], golds: list[str],
                             sampling: SamplingConfig) -> tuple[list[PromptGroup], dict]:
        """Generate and judge; returns the groups and the verifier's counters of this call."""
        samples = self.engine.generate(prompt_ids, sampling)
        flat = [s for group in samples for s in group]
        payload = [None]
        if dist.get_rank() == 0:
            before = self.pool.counters()
            verdicts = self.pool.verify_batch([s.text for s in flat],
                                              [g for g, group in zip(golds, samples) for _ in group],
                                              [s.finish_reason == "stop" for s in flat])
            after = self.pool.counters()
            payload = [([v.status for v in verdicts], {k: after[k] - before.get(k, 0) for k in after})]
        dist.broadcast_object_list(payload, src=0)
        statuses, counters = payload[0]
        groups, i = [], 0
        for ids, gold, group in zip(prompt_ids, golds, samples):
            groups.append(PromptGroup(ids, gold, group, statuses[i:i + len(group)]))
            i += len(group)
        return groups, counters

    def load_weights(self, policy: PolicyWeights, step: int | None) -> dict:
        if self.cfg.rollout.sleep_level:
            self.engine.wake()
        stats = self.engine.update_weights(policy.hf_tensors())
        metrics = {"sync_seconds": stats.seconds, "sync_gb": stats.bytes / 1e9, "sync_buckets": stats.buckets}
        every = self.cfg.rollout.parity_every
        if step is not None and every and (step + 1) % every == 0:
            metrics.update(self._parity_probe(policy))
        return metrics

    def _parity_probe(self, policy: PolicyWeights) -> dict:
        """vLLM's and the trainer's log-probs of the fixed probe sequence; raises PolicyParityError
        (naming the worst parameter group) above rollout.parity_threshold."""
        threshold = self.cfg.rollout.parity_threshold
        engine_logp = self.engine.prompt_logprobs([self.probe_ids])[0]
        trainer_logp = policy.logprobs(self.probe_ids)
        fingerprints = {}
        if (engine_logp - trainer_logp).abs().max().item() > threshold:  # every rank agrees: both replicated
            fingerprints = {"trainer_fp": trainer_fingerprints(policy.hf_tensors()),
                            "engine_fp": self.engine.weight_fingerprints()}
        report = check_parity([engine_logp], [trainer_logp], threshold, **fingerprints)
        return {"parity_max_abs": report.max_abs_diff, "parity_mean_abs": report.mean_abs_diff}

    def maybe_evaluate(self, step: int) -> dict:
        """Held-out greedy pass@1 of the engine's current policy, every train.eval_every steps."""
        from oreal_mega.evaluation.evaluate import evaluate

        train = self.cfg.train
        if not train.eval_every or (step + 1) % train.eval_every:
            return {}
        result = evaluate(self.engine, Path(train.eval_data), tokenizer=self.tokenizer, k=0,
                          max_tokens=self.cfg.rollout.max_tokens, system_prompt=self.cfg.data.system_prompt,
                          chat=self.cfg.data.chat_template, verifier=self.pool)
        return {"eval_greedy_pass@1": result.greedy_pass_at_1}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.engine.shutdown()


def select(groups: list[PromptGroup], cfg, seed: int, step: int) -> tuple[list[Trajectory], dict]:
    """Rewards, advantages over all K samples of each prompt, then the trajectory filter / pair
    selection (seeded by the step, identical on every rank); returns the kept trajectories."""
    k = len(groups[0].samples)
    rewards = rewards_from_verdicts([v for g in groups for v in g.verdicts], k, cfg)
    adv = advantages(rewards.rewards, cfg.advantage_type)
    generator = torch.Generator().manual_seed(cfg.selection_seed + seed * 7_919 + step)
    kept = select_trajectories(rewards.is_correct, cfg, generator).tolist()
    trajectories = []
    for flat in kept:
        p, j = divmod(flat, k)
        sample = groups[p].samples[j]
        trajectories.append(Trajectory(groups[p].prompt_ids, sample.token_ids, bool(rewards.is_correct[p, j]),
                                       float(adv[p, j]), float(rewards.pass_rate[p]), sample.logprobs.tolist()))
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
