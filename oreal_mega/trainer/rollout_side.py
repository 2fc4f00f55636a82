"""Everything on the sampling side of a run: the prompt schedule and tokenizer, the vLLM engine, the
verifier pool (on global rank 0), weight sync from the megatron policy and the parity probe."""
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.models.builder import DTYPES
from oreal_mega.models.flops import measured_peak_flops
from oreal_mega.rollout.parity import check_parity, trainer_fingerprints
from oreal_mega.rollout.prompts import encode_prompts, read_prompts
from oreal_mega.trainer.batch import Trajectory, micro_batches
from oreal_mega.trainer.passes import sequence_logprobs
from oreal_mega.trainer.prompts import PromptSchedule
from oreal_mega.weights.hf_export import export_hf, iter_hf_tensors


@dataclass
class RolloutSide:
    cfg: object
    arch: object
    tokenizer: object
    schedule: PromptSchedule
    engine: object
    pool: object  # VerifierPool on global rank 0, None elsewhere
    probe_ids: list[int]
    peak_flops: float

    @classmethod
    def start(cls, cfg, arch, topo) -> "RolloutSide":
        from transformers import AutoTokenizer

        from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
        from oreal_mega.verifier import VerifierPool

        tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        records = read_prompts(Path(cfg.data.prompts))
        schedule = PromptSchedule(records, cfg.data.prompts_per_step, cfg.objective,
                                  cfg.data.difficulty_balance, cfg.seed, cfg.data.prompts)
        engine = VLLMRolloutEngine(
            cfg.model.path, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.rollout.max_model_len,
            bucket_bytes=cfg.rollout.bucket_mb << 20, rollout_tp=cfg.rollout.rollout_tp,
            cpu_kv_cache_gib=cfg.rollout.cpu_kv_cache_gib, sleep_level=cfg.rollout.sleep_level or 1,
            gpu_memory_utilization=cfg.rollout.gpu_memory_utilization)
        pool = VerifierPool(cfg.verifier.workers, cfg.verifier.timeout_s) if topo.is_main else None
        side = cls(cfg, arch, tokenizer, schedule, engine, pool, [], 0.0)
        side.probe_ids = side.encode(records[:1])[0]  # a fixed probe: the first prompt of the file
        side.peak_flops = measured_peak_flops(topo.device, DTYPES[cfg.model.dtype])
        return side

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return (self.tokenizer.eos_token_id,)

    def encode(self, records) -> list[list[int]]:
        return encode_prompts(self.tokenizer, records, self.cfg.data.chat_template,
                              self.cfg.data.system_prompt)

    def evaluate(self, problems_path: str) -> float:
        """Collective: held-out greedy pass@1 of the engine's current policy."""
        from oreal_mega.evaluation.evaluate import evaluate

        result = evaluate(self.engine, Path(problems_path), tokenizer=self.tokenizer, k=0,
                          max_tokens=self.cfg.rollout.max_tokens, system_prompt=self.cfg.data.system_prompt,
                          chat=self.cfg.data.chat_template, verifier=self.pool)
        return result.greedy_pass_at_1

    def export(self, policy, out_dir: Path) -> Path:
        return export_hf(policy, self.arch, out_dir, self.cfg.model.path, overwrite=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.engine.shutdown()


def sync_weights(engine, policy, arch):
    """Collective: stream the policy's full HF tensors into the engine (bucketed)."""
    return engine.update_weights(iter_hf_tensors(policy, arch))


def parity_probe(side: RolloutSide, policy, arch, threshold: float, tp_group) -> dict:
    """Collective: vLLM's and the trainer's log-probs of the fixed probe sequence; raises
    PolicyParityError (naming the worst parameter group) above `threshold`."""
    ids = side.probe_ids
    engine_logp = side.engine.prompt_logprobs([ids])[0]
    probe = Trajectory(ids[:1], ids[1:], True, 0.0, 0.0)
    [mb] = micro_batches([probe], [[0]], len(ids))
    outputs = sequence_logprobs(policy, [mb], tp_group)
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    trainer_logp = torch.zeros(len(ids) - 1, dtype=torch.float64, device=device)
    owner = outputs and ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0
    if owner:
        trainer_logp += outputs[0][: len(ids) - 1].double()
    dist.all_reduce(trainer_logp)  # exactly one rank contributed
    trainer_logp = trainer_logp.float().cpu()
    gap = (engine_logp - trainer_logp).abs()
    fingerprints = {}
    if gap.max().item() > threshold:  # every rank agrees: both sides are replicated
        fingerprints = {"trainer_fp": trainer_fingerprints(iter_hf_tensors(policy, arch)),
                        "engine_fp": side.engine.weight_fingerprints()}
    report = check_parity([engine_logp], [trainer_logp], threshold, **fingerprints)
    return {"parity_max_abs": report.max_abs_diff, "parity_mean_abs": report.mean_abs_diff}
