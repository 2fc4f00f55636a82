"""Every knob of `oreal-mega train` / `oreal-mega sft`, as typed dataclasses read from YAML
(see oreal_mega/config.py), and the checks of the files they name. Defaults are the OREAL paper's /
reference code's (oreal_mega/objective/ALGORITHM.md). Nothing here imports megatron, vLLM or transformers, so
a bad config is reported within a second or two."""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from oreal_mega.distributed import ParallelConfig, check_layout
from oreal_mega.errors import UserError
from oreal_mega.jsonl import check_lines, read_objects
from oreal_mega.models.hf_config import parse_arch, read_hf_config
from oreal_mega.objective import ObjectiveConfig
from oreal_mega.rollout.formats import check_format
from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.trainer.optim import OptimConfig
from oreal_mega.trainer.preemption import time_limit_seconds
from oreal_mega.verifier.backends import DEFAULT_FALLBACK, check_choice
from oreal_mega.verifier.judge import JudgeConfig


@dataclass
class SFTModelConfig:
    """The policy of `oreal-mega sft`."""
    path: str  # HF directory of the initial policy (config.json, safetensors, tokenizer)
    # training compute; master weights are fp32. No float16: it needs loss scaling, which the trainer does not do
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    recompute: bool = False  # full activation recomputation


@dataclass
class ModelConfig(SFTModelConfig):
    """The policy of `oreal-mega train`, whose frozen reference and token-RM copies may wait in host memory."""
    offload_reference: bool = False  # keep the frozen reference in host memory except for its pass
    offload_token_rm: bool = False  # the same for the token-RM, with its optimizer state


@dataclass
class DataConfig:
    prompts: str = ""  # JSONL: question, gold_answer, optional pass_rate (or another data.format)
    format: str = "auto"  # auto | oreal | math | gsm8k | verl_parquet | chat (field mapping: rollout/formats.py)
    prompts_per_step: int = 64
    system_prompt: str | None = None
    chat_template: bool = True
    difficulty_balance: bool = True  # repeat prompts 6/4/4/2 by pass_rate bucket, drop ≥ 0.8


ENGINES = ("vllm", "replay")


@dataclass
class RolloutConfig:
    engine: str = "vllm"  # vllm: sample from the live policy | replay: serve replay_dir's dumped steps
    replay_dir: str | None = None  # rollout dumps to replay (engine: replay)
    dump_dir: str | None = None  # write each step's prompts, samples, log-probs, verdicts, rewards here
    n: int = 16  # samples per prompt (K)
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = -1
    max_tokens: int = 14000
    max_model_len: int | None = 16384
    rollout_tp: int = 1
    bucket_mb: int = 1024  # weight-sync bucket size
    gpu_memory_utilization: float = 0.5
    # vLLM sleep while training (1: offload weights, 2: discard them; 0: never, and the engine is built without
    # vLLM's sleep mode, i.e. without its cuMem allocator pool for weights and KV cache)
    sleep_level: int = 1
    cpu_kv_cache_gib: int = 1
    parity_every: int = 1  # steps between parity probes (0: never)
    parity_probe_prompts: int = 4  # the probe scores the first N prompts of data.prompts on both sides
    # parity levels (rollout/parity.py); None: model.dtype's default (bf16 0.0625 / 0.5 / 1.6e-2, fp32 6.1e-5 /
    # 9.8e-4 / 1.0e-5). Weights whose fingerprints differ by more than the (relative) tolerance stop the run,
    # naming the group; with matching weights a mean |Δ log-prob| above warn_mean is drift (a warning), above
    # stop_mean it stops
    parity_warn_mean: float | None = None
    parity_stop_mean: float | None = None
    parity_fingerprint_tolerance: float | None = None  # relative
    enforce_eager: bool | None = None  # None: CUDA graphs on GPU, eager on CPU (vLLM compiles otherwise)

    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "parity_threshold": "the parity probe no longer stops on the max |Δ log-prob|: see parity_warn_mean, "
                            "parity_stop_mean (mean |Δ|) and parity_fingerprint_tolerance (default: by model.dtype)"}


@dataclass
class VerifierConfig:
    workers: int = 8
    timeout_s: float = 10.0
    backend: str = "oreal"  # oreal: our rules (verifier/README.md) | math-verify: HF math-verify, as verl calls it
    fallback: str = DEFAULT_FALLBACK  # oreal backend, no explicit answer: none (no_answer) | last_number
    # optional model judge for rule-rejected answers (verifier/judge.py): url, model, prompt_template, timeout_s,
    # concurrency, max_tokens; consulted only for rule-rejected verdicts, counted as verifier_judge_*
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
    # distributed.make_deterministic: torch's deterministic algorithms, a fixed cuBLAS workspace, NCCL's ring, so
    # that the learner's CUDA passes repeat bit for bit (slower; the GPU check's resume test turns it on). CPU
    # runs are deterministic without it
    deterministic: bool = False
    # stop early, saving the last step, when the next step and its checkpoint would not end 60 s before this
    # (seconds, H:MM:SS or D-HH:MM:SS from the run's start) or before the Slurm job's end (SLURM_JOB_END_TIME,
    # used whenever it is set); SIGTERM / SIGUSR1 stop the run the same way (trainer/preemption.py)
    time_limit: float | str | None = None

    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "inject_nan_at_steps": "fault injection moved out of the trainer: tests run "
                               "`python -m oreal_mega.testing.faults --nan-grads-at STEP ... -- CONFIG`"}


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


@dataclass
class SFTDataConfig:
    path: str  # JSONL: prompt + response, or chat messages (the last one the assistant's)
    system_prompt: str | None = None
    sequences_per_step: int = 64
    epochs: int = 1
    max_length: int = 4096  # longer examples are an error, never silently cut


@dataclass
class SFTLoopConfig:
    micro_batch_tokens: int = 16384
    out_dir: str = "runs/sft"
    save_every: int = 100
    keep_last: int = 2
    export_hf: bool = True  # write the final policy as an HF directory (run_dir/hf)
    tensorboard: bool = True
    wandb_project: str | None = None
    max_consecutive_bad_steps: int = 3
    time_limit: float | str | None = None  # as TrainLoopConfig.time_limit


@dataclass
class SFTConfig:
    model: SFTModelConfig
    data: SFTDataConfig
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, min_lr=1e-6, warmup_steps=10,
                                                                   total_steps=0, weight_decay=0.0))
    train: SFTLoopConfig = field(default_factory=SFTLoopConfig)
    seed: int = 1


def _check_model(cfg: TrainConfig | SFTConfig, source: str) -> None:
    """`model.path` holds an HF config of a supported architecture whose layers fit `parallel`."""
    key, path = f"model.path in {source}", Path(cfg.model.path)
    if not (path / "config.json").is_file():
        raise UserError(f"{key}: no config.json in {path}" if path.is_dir() else f"{key}: no directory {path}")
    arch = parse_arch(read_hf_config(path), where=f"{key}: {path / 'config.json'}")
    check_layout(int(os.environ.get("WORLD_SIZE", "1")), cfg.parallel, arch.num_layers)


def _check_problems(key: str, file: str, source: str, what: str, data_format: str = "auto") -> None:
    """`file` (the value of `key`) is a prompt file whose every line has a gold answer; rank 0 says its format."""
    if not file:
        raise UserError(f"{key} in {source} is not set (a JSONL file of questions with gold answers)")
    try:
        records = read_prompts(Path(file), data_format, announce=os.environ.get("RANK", "0") == "0")
        check_lines(Path(file), [(r.line, f"{what} needs a gold answer (gold_answer or answer)")
                                 for r in records if r.gold is None])
    except UserError as err:
        raise UserError(f"{key} in {source}: {err}") from None


def validate(cfg: TrainConfig, source: str = "config") -> None:
    """Checks that need more than types, done before any heavy import, process group or model;
    errors name the key and `source`, the YAML file the config came from."""
    _check_model(cfg, source)
    time_limit_seconds(cfg.train.time_limit, f"train.time_limit in {source}")
    check_choice(cfg.verifier.backend, cfg.verifier.fallback, source)
    check_format(cfg.data.format, f"data.format in {source}")
    _check_problems("data.prompts", cfg.data.prompts, source, "a training prompt", cfg.data.format)
    if cfg.train.eval_every:
        if not cfg.train.eval_data:
            raise UserError(f"train.eval_every > 0 in {source} needs train.eval_data (a JSONL of problems "
                            "with answers)")
        _check_problems("train.eval_data", cfg.train.eval_data, source, "an eval problem")
    if cfg.rollout.sleep_level not in (0, 1, 2):
        raise UserError(f"rollout.sleep_level in {source}: {cfg.rollout.sleep_level} is not 0, 1 or 2")
    _check_parity_levels(cfg.rollout, source)
    if cfg.rollout.engine not in ENGINES:
        raise UserError(f"rollout.engine in {source}: {cfg.rollout.engine!r} is not one of {', '.join(ENGINES)}")
    if cfg.rollout.engine == "replay" and not (cfg.rollout.replay_dir and Path(cfg.rollout.replay_dir).is_dir()):
        raise UserError(f"rollout.replay_dir in {source}: engine 'replay' needs a directory of rollout dumps, "
                        f"got {cfg.rollout.replay_dir!r}")


def _check_parity_levels(rollout: RolloutConfig, source: str) -> None:
    if rollout.parity_probe_prompts < 1:
        raise UserError(f"rollout.parity_probe_prompts in {source}: {rollout.parity_probe_prompts} is not ≥ 1")
    for key in ("parity_warn_mean", "parity_stop_mean", "parity_fingerprint_tolerance"):
        value = getattr(rollout, key)
        if value is not None and not 0 < value < float("inf"):
            raise UserError(f"rollout.{key} in {source}: {value} is not a positive number (or null: the "
                            "model dtype's default)")
    warn, stop = rollout.parity_warn_mean, rollout.parity_stop_mean
    if warn is not None and stop is not None and warn > stop:
        raise UserError(f"rollout.parity_warn_mean in {source}: {warn} is above rollout.parity_stop_mean {stop}")


def validate_sft(cfg: SFTConfig, source: str = "config") -> None:
    """What `validate` does for `oreal-mega sft`: the model, the layout, and data.path as JSONL."""
    _check_model(cfg, source)
    time_limit_seconds(cfg.train.time_limit, f"train.time_limit in {source}")
    try:
        read_objects(Path(cfg.data.path), "SFT data file")
    except UserError as err:
        raise UserError(f"data.path in {source}: {err}") from None
