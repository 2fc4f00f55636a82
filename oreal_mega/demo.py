"""`oreal-mega demo [--out DIR]`: the whole OREAL pipeline on a tiny model, on CPU, in minutes.

Synthetic math data and a local tokenizer → SFT of a tiny Qwen2 to a weak policy → greedy eval →
OREAL RL under torchrun (2 processes: vLLM rollouts, megatron on gloo) → greedy eval of the
exported HF model → a plot and a results table. Every stage is an ordinary `oreal-mega` command
with a config written into the output directory, so each can be rerun or changed by hand.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Settings for 2 CPU cores; RL hyperparameters are scaled up from the paper's 7B values for a
# 1M-parameter model that needs hundreds of times larger steps to move in a few minutes.
SFT = {
    "model": {"dtype": "float32"},
    "data": {"sequences_per_step": 64, "epochs": 3},
    "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "weight_decay": 0.0},
    "train": {"micro_batch_tokens": 4096, "save_every": 0, "tensorboard": False},
}
RL = {
    "model": {"dtype": "float32"},
    "data": {"prompts_per_step": 64, "difficulty_balance": False},
    "rollout": {"n": 8, "temperature": 1.0, "top_p": 1.0, "max_tokens": 48, "max_model_len": 256,
                "parity_threshold": 1e-3},
    "verifier": {"workers": 1, "timeout_s": 5},
    "objective": {"actor_freeze_steps": 3},
    "optim": {"lr": 1e-4, "min_lr": 2e-5, "warmup_steps": 3, "weight_decay": 0.0},
    "rm_optim": {"lr": 1e-3, "min_lr": 2e-4, "warmup_steps": 3, "weight_decay": 0.0},
    "train": {"micro_batch_tokens": 4096, "save_every": 10, "keep_last": 1},
}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-examples", type=int, default=4000)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2], help="synthetic task levels")
    parser.add_argument("--max-operand", type=int, default=12)
    parser.add_argument("--rl-steps", type=int, default=40)
    parser.add_argument("--eval-problems", type=int, default=300)
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes for SFT and RL")


def _stage(title: str, cmd: list[str], log: Path) -> float:
    print(f"== {title}: {' '.join(cmd)}  (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"demo stage '{title}' failed (exit {proc.returncode}); end of {log}:\n{tail}")
    seconds = time.perf_counter() - start
    print(f"   done in {seconds:.0f} s", flush=True)
    return seconds


def _config(path: Path, base: dict, **sections) -> Path:
    merged = {key: dict(value) for key, value in base.items()}
    for section, values in sections.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path


def _oreal(*args) -> list[str]:
    return [sys.executable, "-m", "oreal_mega", *map(str, args)]


def _torchrun(nproc: int, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "-m", "oreal_mega",
            *map(str, args)]


def run(args) -> int:
    out = Path(args.out).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    timings = {}
    timings["data"] = _stage("synthetic data, tokenizer, tiny model", _oreal(
        "data", "synthetic", "--out", data, "--seed", args.seed, "--train", args.sft_examples,
        "--eval", args.eval_problems, "--levels", *args.levels, "--max-operand", args.max_operand),
        logs / "data.log")
    sft_cfg = _config(out / "sft.yaml", SFT, model={"path": str(data / "model")},
                      data={"path": str(data / "sft.jsonl")}, train={"out_dir": str(out / "sft")}, seed=args.seed)
    timings["sft"] = _stage("SFT", _torchrun(args.nproc, "sft", sft_cfg), logs / "sft.log")
    sft_model = out / "sft" / "hf"
    evaluate = ["--k", 0, "--max-tokens", RL["rollout"]["max_tokens"], "--dtype", "float32"]
    timings["eval_sft"] = _stage("greedy eval of the SFT policy", _oreal(
        "eval", sft_model, data / "eval.jsonl", "--out", out / "eval_sft", *evaluate), logs / "eval_sft.log")
    rl_cfg = _config(out / "rl.yaml", RL, model={"path": str(sft_model)},
                     data={"prompts": str(data / "rl_prompts.jsonl")},
                     train={"steps": args.rl_steps, "out_dir": str(out / "rl"), "export_hf_every": args.rl_steps,
                            "eval_every": max(args.rl_steps // 4, 1), "eval_data": str(data / "eval.jsonl")},
                     optim={"total_steps": args.rl_steps}, rm_optim={"total_steps": args.rl_steps},
                     seed=args.seed)
    timings["rl"] = _stage("OREAL RL", _torchrun(args.nproc, "train", rl_cfg), logs / "rl.log")
    rl_model = out / "rl" / "hf" / f"step_{args.rl_steps:06d}"
    timings["eval_rl"] = _stage("greedy eval of the RL policy", _oreal(
        "eval", rl_model, data / "eval.jsonl", "--out", out / "eval_rl", *evaluate), logs / "eval_rl.log")

    before = json.loads((out / "eval_sft" / "summary.json").read_text())
    after = json.loads((out / "eval_rl" / "summary.json").read_text())
    plot = _plot(out / "rl" / "metrics.jsonl", out / "learning.png", before, after)
    table = _results(out / "RESULTS.md", before, after, timings)
    print(table)
    print(f"\ndata {data}\nSFT model {sft_model}\nRL run {out / 'rl'} (metrics.jsonl, tensorboard/)\n"
          f"RL model (HF) {rl_model}\nplot {plot}\nresults {out / 'RESULTS.md'}")
    return 0


def _pass1(summary: dict) -> float:
    return summary["greedy_pass_at_1"]


def _results(path: Path, before: dict, after: dict, timings: dict) -> str:
    lines = ["| policy | greedy pass@1 (held-out) |", "|---|---|",
             f"| SFT | {_pass1(before):.3f} |", f"| SFT + OREAL | {_pass1(after):.3f} |", "",
             "stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    text = "\n".join(lines)
    path.write_text(text + "\n")
    return text


def _plot(metrics_path: Path, png: Path, before: dict, after: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    steps = [r["step"] + 1 for r in records]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [("rollout pass rate / held-out greedy pass@1", "pass_rate"), ("mean reward", "reward_mean"),
              ("KL to reference", "kl"), ("token-RM accuracy", "trm_accuracy")]
    for ax, (title, key) in zip(axes.flat, panels):
        xs = [s for s, r in zip(steps, records) if key in r]
        ax.plot(xs, [r[key] for r in records if key in r], ".-", label=key)
        ax.set_title(title)
        ax.set_xlabel("RL step")
    evals = [(s, r["eval_greedy_pass@1"]) for s, r in zip(steps, records) if "eval_greedy_pass@1" in r]
    axes[0, 0].plot([0] + [s for s, _ in evals] + [steps[-1]],
                    [_pass1(before)] + [v for _, v in evals] + [_pass1(after)], "o-", label="held-out greedy pass@1")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png
