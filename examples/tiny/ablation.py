"""Table-2-style ablation of OREAL on the synthetic task, over several seeds, on CPU.

For each seed: synthetic data and a fresh tiny Qwen2 → SFT → then, from that same SFT policy and
with the same RL steps, prompts, samples and learning rates, one RL run per objective variant below.
Every model is scored on the seed's held-out problems (greedy pass@1, sampled pass@1, pass@8). The
table (mean ± sample std over seeds, and each seed's value) goes to OUT/RESULTS.md, the raw summaries
to OUT/results.json. Finished runs are reused, so an interrupted ablation resumes where it stopped.

    python examples/tiny/ablation.py --out runs/ablation --seeds 0 1 2
    python examples/tiny/ablation.py --out runs/ablation --table-only   # the table of what has finished
"""
import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from oreal_mega.demo import RL, RL_STEPS, add_task_arguments, evaluate_model, make_data, train_rl, train_sft

# The paper's Table 2, one change per row: each row is the row above with the keys of CHANGES[row] set.
# Each is a whole `objective:` section (unset keys keep the reference code's defaults,
# oreal_mega/objective/config.py). The last row is not in the paper: ω± from the synthetic task's
# oracle (the first erroneous token of each wrong answer) instead of the RM, an upper bound on what
# token-level credit assignment can give here. "+ pair selection (no RM)" is the demo's objective.
# OREAL without the token-level RM, every sample kept (the authors' oreal_wo_tokenrm objective)
WITHOUT_TRM = {"token_weights": "none", "filter_trajectory": False, "keep_pairs": False, "actor_freeze_steps": 0}
CHANGES = {
    "REINFORCE": {**WITHOUT_TRM, "advantage_type": "reinforce", "policy_normalizer": "joint",
                  "negative_loss_factor": 1.0},
    "+ reward shaping (RLOO)": {"advantage_type": "rloo"},
    "+ behaviour cloning": {"policy_normalizer": "split", "negative_loss_factor": 0.5},
    "+ pair selection (no RM)": {"filter_trajectory": True, "keep_pairs": True},
    "+ token-level RM (OREAL)": {"token_weights": "threshold", "actor_freeze_steps": 3},
    "+ oracle token weights": {"token_weights": "oracle"},
}


def _nested(changes: dict) -> dict:
    """Row → its whole objective: the row above's with this row's changes applied."""
    rows, objective = {}, {}
    for name, change in changes.items():
        objective = {**objective, **change}
        rows[name] = objective
    return rows


# Attempts to make the co-trained RM help: each is the RM row with these keys changed (not a step of
# the paper's table). 'topk' is the reference's alternative weighting (commented out in its config):
# min-max scaling keeps ω away from zero even when q ≈ ½. The reference log-prob input is not in the
# paper: the RM's logit also sees the lowest log-prob the frozen reference gave the prefix's tokens.
ATTEMPTS = {
    "token-level RM, top-k weights (attempt)": {"token_weights": "topk"},
    "token-level RM, 10-step actor freeze (attempt)": {"actor_freeze_steps": 10},
    "token-level RM, reference log-prob input (attempt)": {"trm_input": "hidden+reference_logprob"},
    "token-level RM, reference log-prob input, 10-step actor freeze (attempt)": {
        "trm_input": "hidden+reference_logprob", "actor_freeze_steps": 10},
}
RM_ROW = "+ token-level RM (OREAL)"
VARIANTS = _nested(CHANGES) | {name: {**_nested(CHANGES)[RM_ROW], **change} for name, change in ATTEMPTS.items()}
SCORES = (("greedy pass@1", "greedy_pass_at_1"), ("sampled pass@1", "sampled_pass_at_1"), ("pass@8", "pass_at_8"))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def run_seed(root: Path, args) -> dict:
    """All runs of one seed (finished ones are reused); returns {row name: eval summary}."""
    out = root / f"seed{args.seed}"
    wanted = [name for name in VARIANTS if not args.variants or name in args.variants]
    if args.table_only:
        wanted = []
    else:
        _prepare(out, args)
    results = {"SFT": _finished(out, "sft") or _evaluate(out, "sft", out / "sft" / "hf")}
    for name, objective in VARIANTS.items():
        run = out / f"rl_{_slug(name)}"
        summary = _finished(out, run.name)
        if summary is None and name in wanted:
            model = run / "hf" / f"step_{args.rl_steps:06d}"
            if not (model / "config.json").is_file():
                train_rl(run, out / "sft" / "hf", out / "data", args, out / "logs" / f"{run.name}.log",
                         objective, title=f"RL: {name}")
            summary = _evaluate(out, run.name, model)
        if summary is not None:
            results[name] = summary
    return results


def _prepare(out: Path, args) -> None:
    """The seed's data and SFT policy, unless they exist."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    if not (out / "data" / "eval.jsonl").is_file():
        make_data(out / "data", args, out / "logs" / "data.log")
    if not (out / "sft" / "hf" / "config.json").is_file():
        train_sft(out / "sft", out / "data", args, out / "logs" / "sft.log")


def _finished(out: Path, run_name: str) -> dict | None:
    summary = out / f"eval_{run_name}" / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else None


def _evaluate(out: Path, run_name: str, model: Path) -> dict:
    return evaluate_model(model, out / "data", out / f"eval_{run_name}", out / "logs" / f"eval_{run_name}.log",
                          f"eval: {run_name}", k=8)[0]


def table(by_seed: dict[int, dict], args, seconds: float) -> str:
    """Markdown: per row, mean ± sample std over the seeds that have the run (n), each seed's greedy
    pass@1 ('—' where a run is missing), then every RL row's greedy gain over the same seed's SFT."""
    seeds = sorted(by_seed)
    rows = list(dict.fromkeys(row for s in seeds for row in by_seed[s]))
    lines = ["| policy | n | " + " | ".join(f"{label} (mean ± std)" for label, _ in SCORES)
             + f" | greedy pass@1 per seed ({', '.join(map(str, seeds))}) |",
             "|---" * (len(SCORES) + 3) + "|"]
    for row in rows:
        have = [s for s in seeds if row in by_seed[s]]
        cells = []
        for _, key in SCORES:
            values = [100 * by_seed[s][row][key] for s in have]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        per_seed = ", ".join(f"{100 * by_seed[s][row]['greedy_pass_at_1']:.1f}" if s in have else "—"
                             for s in seeds)
        lines.append(f"| {row} | {len(have)} | " + " | ".join(cells) + f" | {per_seed} |")
    lines.append("")
    for row in rows[1:]:
        gains = [100 * (by_seed[s][row]["greedy_pass_at_1"] - by_seed[s]["SFT"]["greedy_pass_at_1"])
                 for s in seeds if row in by_seed[s]]
        lines.append(f"- {row} minus SFT, greedy pass@1 points: mean {statistics.mean(gains):+.1f} "
                     f"(per seed {', '.join(f'{g:+.1f}' for g in gains)})")
    wall = "" if args.table_only else f"; wall time {seconds / 60:.0f} min"
    lines += ["", "Each row's change over the row above (objective keys): "
              + "; ".join(f"{row}: {', '.join(f'{k}={v}' for k, v in CHANGES[row].items())}"
                          for row in rows if row in CHANGES and row != "REINFORCE")]
    attempts = [row for row in rows if row in ATTEMPTS]
    if attempts:
        lines += ["", f"Attempts, each the row '{RM_ROW}' with: " + "; ".join(
            f"{row}: {', '.join(f'{k}={v}' for k, v in ATTEMPTS[row].items())}" for row in attempts)]
    lines += ["", f"Held-out problems per seed: {by_seed[seeds[0]]['SFT']['problems']}; RL: {args.rl_steps} steps of "
              f"{RL['data']['prompts_per_step']} prompts × {RL['rollout']['n']} samples{wall}.",
              "Command: `python " + shlex.join(sys.argv) + "`"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--rl-steps", type=int, default=RL_STEPS)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--table-only", action="store_true", help="tabulate the finished runs, run nothing")
    add_task_arguments(parser)
    args = parser.parse_args()
    root = Path(args.out).resolve()
    start = time.perf_counter()
    by_seed = {}
    for seed in args.seeds:
        args.seed = seed
        by_seed[seed] = run_seed(root, args)
        (root / "results.json").write_text(json.dumps(by_seed, indent=1))
    text = table(by_seed, args, time.perf_counter() - start)
    print(text)
    (root / "RESULTS.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
