"""Rollout and verification for one step: vLLM samples K completions per prompt (prompts split over
the rollout replicas, results on every rank); global rank 0 verifies them in its process pool and
broadcasts the verdicts, so every rank sees the same rewards."""
from dataclasses import dataclass

import torch.distributed as dist

from oreal_mega.rollout import SamplingConfig
from oreal_mega.rollout.base import Sample


@dataclass
class PromptGroup:
    prompt_ids: list[int]
    gold: str
    samples: list[Sample]
    verdicts: list[str]  # verifier status per sample


def sampling_for_step(cfg, step: int, seed: int, stop_token_ids: tuple[int, ...]) -> SamplingConfig:
    r = cfg.rollout
    return SamplingConfig(n=r.n, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                          max_tokens=r.max_tokens, seed=(seed * 1_000_003 + step) % 2**31,
                          stop_token_ids=stop_token_ids)


def rollout_and_verify(engine, pool, prompt_ids: list[list[int]], golds: list[str],
                       sampling: SamplingConfig) -> tuple[list[PromptGroup], dict]:
    """Generate and judge; returns the groups and the verifier's counters of this call."""
    samples = engine.generate(prompt_ids, sampling)
    flat = [s for group in samples for s in group]
    payload = [None]
    if dist.get_rank() == 0:
        before = pool.counters()
        verdicts = pool.verify_batch([s.text for s in flat],
                                     [g for g, group in zip(golds, samples) for _ in group],
                                     [s.finish_reason == "stop" for s in flat])
        after = pool.counters()
        payload = [([v.status for v in verdicts], {k: after[k] - before.get(k, 0) for k in after})]
    dist.broadcast_object_list(payload, src=0)
    statuses, counters = payload[0]
    groups, i = [], 0
    for ids, gold, group in zip(prompt_ids, golds, samples):
        groups.append(PromptGroup(ids, gold, group, statuses[i:i + len(group)]))
        i += len(group)
    return groups, counters
