"""Every knob of `oreal-mega train` / `oreal-mega sft`, as typed dataclasses read from YAML
(see oreal_mega/config.py). Defaults are the OREAL paper's / reference code's (oreal-algorithm.md §3)."""
from dataclasses import dataclass, field

from oreal_mega.distributed import ParallelConfig
from oreal_mega.objective import ObjectiveConfig
from oreal_mega.trainer.optim import OptimConfig
from oreal_mega.verifier.judge import JudgeConfig


@dataclass
class ModelConfig:
    path: str  # HF directory of the initial policy (config.json, safetensors, tokenizer)
    dtype: str = "bfloat16"  # float32 | bfloat16 (training compute; master weights are fp32)
    recompute: bool = False  # full activation recomputation
    offload_reference: bool = False  # keep the frozen reference in host memory except for its pass
    offload_token_rm: bool = False  # the same for the token-RM, with its optimizer state


@dataclass
class DataConfig:
    prompts: str = ""  # JSONL: question, gold_answer, optional pass_rate
    prompts_per_step: int = 64
    system_prompt: str | None = None
    chat_template: bool = True
    difficulty_balance: bool = True  # repeat prompts 6/4/4/2 by pass_rate bucket, drop ≥ 0.8


@dataclass
class RolloutConfig:
    n: int = 16  # samples per prompt (K)
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = -1
    max_tokens: int = 14000
    max_model_len: int | None = 16384
    rollout_tp: int = 1
    bucket_mb: int = 1024  # weight-sync bucket size
    gpu_memory_utilization: float = 0.5
    sleep_level: int = 1  # vLLM sleep while training (1: offload weights, 2: discard them; 0: never)
    cpu_kv_cache_gib: int = 1
    parity_every: int = 1  # steps between parity probes (0: never)
    parity_threshold: float = 0.05  # max |Δ log-prob| between vLLM and trainer before stopping


@dataclass
class VerifierConfig:
    workers: int = 8
    timeout_s: float = 10.0
    # optional model judge for rule-rejected answers (verifier/judge.py): url, model, prompt_template, timeout_s,
    # concurrency, max_tokens; used by a pool built as VerifierPool(workers, timeout_s, judge=cfg.verifier.judge)
    judge: JudgeConfig | None = None


@dataclass
class TrainLoopConfig:
    steps: int = 90
    micro_batch_tokens: int = 16384  # token budget of one packed micro-batch
    out_dir: str = "runs/oreal"
    save_every: int = 10
    keep_last: int = 3
    export_hf_every: int = 0  # 0: never
    max_consecutive_bad_steps: int = 3  # NaN/inf loss or grad norm: skip, then stop after K
    zero_reward_warn_steps: int = 3
    tensorboard: bool = True
    wandb_project: str | None = None
    eval_every: int = 0  # steps between held-out greedy evaluations (0: never)
    eval_data: str | None = None  # JSONL of held-out problems with gold answers
    inject_nan_at_steps: list[int] = field(default_factory=list)  # fault injection: tests the NaN guard


@dataclass
class TrainConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rm_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6, min_lr=4e-7))
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    seed: int = 1


def validate(cfg: TrainConfig) -> None:
    """Checks that need more than types, done before any process group or model exists."""
    from pathlib import Path

    from oreal_mega.errors import UserError
    from oreal_mega.rollout.prompts import read_prompts

    missing = [r.line for r in read_prompts(Path(cfg.data.prompts)) if r.gold is None]
    if missing:
        raise UserError(f"{cfg.data.prompts}:{missing[0]}: a training prompt needs a gold answer "
                        "(gold_answer or answer)")
    if cfg.train.eval_every:
        if not cfg.train.eval_data:
            raise UserError("train.eval_every > 0 needs train.eval_data (a JSONL of problems with answers)")
        missing = [r.line for r in read_prompts(Path(cfg.train.eval_data)) if r.gold is None]
        if missing:
            raise UserError(f"{cfg.train.eval_data}:{missing[0]}: an eval problem needs a gold answer")
    if cfg.rollout.sleep_level not in (0, 1, 2):
        raise UserError(f"rollout.sleep_level={cfg.rollout.sleep_level}: expected 0, 1 or 2")
