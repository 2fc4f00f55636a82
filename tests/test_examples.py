"""examples/: every config loads through the real schema with the paper's hyperparameters and a
buildable layout, and the Slurm launcher composes the intended srun + torchrun command."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

from oreal_mega.config import load_config
from oreal_mega.distributed import check_layout
from oreal_mega.trainer.config import TrainConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LAUNCHER = EXAMPLES / "slurm" / "launch.sbatch"

# Shapes from the models' config.json (layers, attention heads, KV heads).
QWEN_7B = (28, 28, 4)
QWEN_32B = (64, 40, 8)
# file → (GPUs it is written for, model shape, has the paper's system prompt)
LAYOUTS = {
    "qwen2.5-7b-1node.yaml": (8, QWEN_7B, True),
    "qwen2.5-7b-4nodes.yaml": (32, QWEN_7B, True),
    "qwen2.5-32b-4nodes.yaml": (32, QWEN_32B, True),
    "deepseek-r1-distill-qwen-7b.yaml": (8, QWEN_7B, False),
}
PROMPT_END = "repeat the final answer using a '\\boxed{}' without any units, you have [[8192]] tokens to complete the answer."


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(LAYOUTS)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_config_has_paper_hyperparameters(name):
    cfg = load_config(TrainConfig, EXAMPLES / name)
    assert (cfg.data.prompts_per_step, cfg.rollout.n) == (64, 16)
    assert (cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k) == (1.0, 0.9, -1)
    assert (cfg.rollout.max_tokens, cfg.rollout.max_model_len) == (14000, 16384)
    assert cfg.train.micro_batch_tokens >= cfg.rollout.max_model_len  # a full trajectory fits one micro-batch
    policy, rm = cfg.optim, cfg.rm_optim
    assert (policy.lr, policy.min_lr, rm.lr, rm.min_lr) == (5e-7, 1e-7, 2e-6, 4e-7)
    for opt in (policy, rm):
        assert (opt.weight_decay, opt.clip_grad, opt.warmup_steps, opt.total_steps) == (0.01, 1.0, 10, 90)
    obj = cfg.objective
    assert (obj.mode, obj.kl_coef, obj.kl_type, obj.negative_loss_factor) == ("code", 0.01, "k3", 0.5)
    assert (obj.actor_freeze_steps, obj.token_weights, obj.advantage_type) == (10, "threshold", "rloo")
    assert (cfg.train.steps, cfg.train.save_every, cfg.train.export_hf_every) == (90, 10, 10)
    assert cfg.data.difficulty_balance and cfg.model.recompute and cfg.seed == 0


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_is_buildable(name):
    cfg = load_config(TrainConfig, EXAMPLES / name)
    gpus, (layers, heads, kv_heads), _ = LAYOUTS[name]
    check_layout(gpus, cfg.parallel, layers)  # raises on an impossible TP × PP split
    for size in (cfg.parallel.tp, cfg.rollout.rollout_tp):
        assert heads % size == 0 and kv_heads % size == 0
    assert gpus % cfg.rollout.rollout_tp == 0 and 8 % cfg.rollout.rollout_tp == 0  # replicas within a node
    assert 0.0 < cfg.rollout.gpu_memory_utilization < 0.5


def test_system_prompts():
    prompts = {name: load_config(TrainConfig, EXAMPLES / name).data.system_prompt for name in LAYOUTS}
    paper = {prompts[name] for name, (_, _, has_prompt) in LAYOUTS.items() if has_prompt}
    assert len(paper) == 1  # the same text everywhere
    [text] = paper
    assert text.startswith("You are an expert mathematician") and text.endswith(PROMPT_END)
    assert prompts["deepseek-r1-distill-qwen-7b.yaml"] is None


def test_launcher_syntax():
    subprocess.run(["bash", "-n", str(LAUNCHER)], check=True)


def _tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_launcher_command(tmp_path):
    """Runs the script outside Slurm with stand-ins for `scontrol` (expands the node list) and
    `srun` (prints the command it would start on every node)."""
    _tool(tmp_path, "scontrol", 'printf "gpu-a17\\ngpu-a18\\n"\n')
    _tool(tmp_path, "srun", 'printf "%s\\n" "$@"\n')
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-a[17-18]",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "4242"}
    config = "examples/qwen2.5-7b-4nodes.yaml"
    result = subprocess.run(["bash", str(LAUNCHER), config, "optim.lr=1e-6", "train.out_dir=runs/a b"],
                            cwd=EXAMPLES.parent, env=env, capture_output=True, text=True, check=True)
    argv = result.stdout.splitlines()
    assert argv[:2] == ["--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    torchrun = argv[argv.index("torchrun") + 1:]
    assert torchrun == ["--nnodes", "2", "--nproc-per-node", "8", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", "gpu-a17:29500", "--rdzv-id", "4242",
                        "--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "--shutdown-timeout", "900",
                        "-m", "oreal_mega", "train", config, "optim.lr=1e-6", "train.out_dir=runs/a b"]


def test_launcher_rejects_missing_config(tmp_path):
    result = subprocess.run(["bash", str(LAUNCHER), str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert result.returncode == 2 and "config file not found" in result.stderr


def _ablation_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation", EXAMPLES / "tiny" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_variants_are_valid_objectives_and_its_table_averages_over_seeds():
    import argparse

    from oreal_mega.objective import ObjectiveConfig

    ablation = _ablation_module()
    for objective in ablation.VARIANTS.values():
        ObjectiveConfig(**objective)
    full = ObjectiveConfig(**ablation.VARIANTS["+ token-level RM (OREAL)"])
    assert full.token_weights == "threshold" and full.keep_pairs  # the paper's objective, token-RM on
    # one change per row: behaviour cloning is OREAL without the RM, pairs add only the selection and
    # are the demo's objective
    assert ObjectiveConfig(**ablation.VARIANTS["+ behaviour cloning"]) == ObjectiveConfig(**ablation.WITHOUT_TRM)
    pairs = ObjectiveConfig(**ablation.VARIANTS["+ pair selection (no RM)"])
    assert pairs.keep_pairs and pairs.token_weights == "none" and pairs.actor_freeze_steps == 0
    assert pairs == ObjectiveConfig(**ablation.RL["objective"])
    assert ObjectiveConfig(**ablation.VARIANTS["+ oracle token weights"]).token_weights == "oracle"
    for attempt, change in ablation.ATTEMPTS.items():  # each attempt: the RM row with its keys changed
        assert ablation.VARIANTS[attempt] == {**ablation.VARIANTS["+ token-level RM (OREAL)"], **change}

    def summary(greedy):
        return {"greedy_pass_at_1": greedy, "sampled_pass_at_1": greedy / 2, "pass_at_8": 0.9, "problems": 300}

    by_seed = {0: {"SFT": summary(0.5), "REINFORCE": summary(0.6), "OREAL": summary(0.7)},
               1: {"SFT": summary(0.4), "REINFORCE": summary(0.8)}}  # seed 1's OREAL run is missing
    text = ablation.table(by_seed, argparse.Namespace(rl_steps=60, table_only=False), 60.0)
    assert "RL: 60 steps of 64 prompts × 8 samples; wall time 1 min." in text
    tabulated = ablation.table(by_seed, argparse.Namespace(rl_steps=60, table_only=True), 1.0)
    assert "RL: 60 steps of 64 prompts × 8 samples." in tabulated  # no runs made, so no wall time
    assert "| SFT | 2 | 45.0 ± 7.1 | 22.5 ± 3.5 | 90.0 ± 0.0 | 50.0, 40.0 |" in text
    assert "| OREAL | 1 | 70.0 ± 0.0 | 35.0 ± 0.0 | 90.0 ± 0.0 | 70.0, — |" in text
    assert "- REINFORCE minus SFT, greedy pass@1 points: mean +25.0 (per seed +10.0, +40.0)" in text
    assert "- OREAL minus SFT, greedy pass@1 points: mean +20.0 (per seed +20.0)" in text
