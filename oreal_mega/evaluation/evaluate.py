"""Evaluate a policy on problems with gold answers: greedy pass@1 and sampled pass@k.

    from oreal_mega.evaluation import evaluate
    result = evaluate("runs/sft/hf", "data/eval.jsonl", k=8)          # builds its own engine
    result = evaluate(engine, records, tokenizer=tokenizer, k=0)      # the trainer's engine, greedy only
    print(result.table()); result.write("runs/sft/eval")

Greedy decoding (temperature 0) gives pass@1; `n` samples per problem (default `k`) at the
given temperature give the unbiased pass@k estimate (Chen et al. 2021) and the sampled pass@1
(the mean correctness of the samples). Every response is judged by a `VerifierPool` (under
torch.distributed on global rank 0 only, the verdicts broadcast to every rank): the caller's, or one
of its own with `verifier.backend` / `verifier.fallback` = `backend` / `fallback`.

The summary also breaks these down by each grouping field the problems carry (`group_by`, default
GROUP_FIELDS: MATH's `level` and `subject`, verl's `data_source`): `by_level`, `by_subject`, ...,
one entry per value. `write` puts the per-problem verdicts in problems.jsonl: index, file line,
question, gold, the record's other fields (the group fields among them), the greedy response with
its extracted answer and status, and each sample's extracted answer and status.
"""
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch.distributed as dist

from oreal_mega.evaluation.metrics import GROUP_FIELDS, mean, pass_at_k, status_counts
from oreal_mega.rollout.base import RolloutEngine, Sample, SamplingConfig
from oreal_mega.rollout.prompts import PromptRecord, encode_prompts, read_prompts, records_from_dicts
from oreal_mega.verifier.backends import DEFAULT_FALLBACK, verify_function


@dataclass
class ProblemResult:
    index: int  # position in the evaluated problems, from 0
    record: PromptRecord
    greedy: Sample
    greedy_verdict: object  # verifier.Verdict
    samples: list[Sample] = field(default_factory=list)
    sample_verdicts: list = field(default_factory=list)

    @property
    def num_correct(self) -> int:
        return sum(verdict.correct for verdict in self.sample_verdicts)

    def to_json(self, k: int) -> dict:
        row = {"index": self.index, "line": self.record.line, "question": self.record.question,
               "gold": self.record.gold, **self.record.extra,
               "greedy_response": self.greedy.text,
               "greedy_correct": self.greedy_verdict.correct,
               "greedy_status": self.greedy_verdict.status,
               "greedy_pred": self.greedy_verdict.pred,
               "greedy_tokens": len(self.greedy.token_ids)}
        if self.samples:
            row.update(samples_correct=[verdict.correct for verdict in self.sample_verdicts],
                       samples_status=[verdict.status for verdict in self.sample_verdicts],
                       samples_pred=[verdict.pred for verdict in self.sample_verdicts],
                       samples_tokens=[len(sample.token_ids) for sample in self.samples],
                       num_correct=self.num_correct,
                       **{f"pass_at_{k}": pass_at_k(len(self.samples), self.num_correct, k)})
        return row


@dataclass
class EvalResult:
    problems: list[ProblemResult]
    k: int
    n: int
    temperature: float
    max_tokens: int
    seconds: float
    group_by: tuple[str, ...] = GROUP_FIELDS
    verifier: str | None = None  # which verifier judged, when evaluate made the pool: "oreal, fallback none"

    def _pass_at_k(self, problems: list[ProblemResult]) -> float:
        return mean(pass_at_k(self.n, p.num_correct, self.k) for p in problems)

    def _rates(self, problems: list[ProblemResult]) -> dict:
        rates = {"problems": len(problems), "greedy_pass_at_1": mean(p.greedy_verdict.correct for p in problems)}
        if self.k:
            rates["sampled_pass_at_1"] = mean(v.correct for p in problems for v in p.sample_verdicts)
            rates[f"pass_at_{self.k}"] = self._pass_at_k(problems)
        return rates

    def _groups(self) -> dict[str, dict[str, dict]]:
        """{field: {value: pass rates of the problems with that value}} for each field of `group_by` that some
        problem carries (a problem without the field is in none of its groups); values as strings, sorted."""
        breakdown = {}
        for name in self.group_by:
            members = {}
            for problem in self.problems:
                if name in problem.record.extra:
                    members.setdefault(str(problem.record.extra[name]), []).append(problem)
            if members:
                breakdown[name] = {value: self._rates(members[value]) for value in sorted(members)}
        return breakdown

    @property
    def greedy_pass_at_1(self) -> float:
        return mean(p.greedy_verdict.correct for p in self.problems)

    @property
    def pass_at_k(self) -> float | None:
        return self._pass_at_k(self.problems) if self.k else None

    def summary(self) -> dict:
        greedy = [p.greedy for p in self.problems]
        samples = [s for p in self.problems for s in p.samples]
        summary = {
            "problems": len(self.problems), **({"verifier": self.verifier} if self.verifier else {}),
            "k": self.k, "n": self.n,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
            "greedy_pass_at_1": self.greedy_pass_at_1,
            "greedy_status_counts": status_counts(p.greedy_verdict.status for p in self.problems),
            "greedy_mean_tokens": mean(len(s.token_ids) for s in greedy),
            "greedy_truncation_rate": mean(s.finish_reason == "length" for s in greedy),
        }
        if self.k:
            summary.update({
                "sampled_pass_at_1": mean(v.correct for p in self.problems
                                          for v in p.sample_verdicts),
                f"pass_at_{self.k}": self.pass_at_k,
                "sample_status_counts": status_counts(v.status for p in self.problems
                                                      for v in p.sample_verdicts),
                "sample_mean_tokens": mean(len(s.token_ids) for s in samples),
                "sample_truncation_rate": mean(s.finish_reason == "length" for s in samples),
            })
        summary.update({f"by_{name}": groups for name, groups in self._groups().items()})
        summary["seconds"] = self.seconds
        return summary

    def table(self) -> str:
        s = self.summary()
        sampled = bool(self.k)
        groups = {name: s[f"by_{name}"] for name in self.group_by if f"by_{name}" in s}
        group_rows = {name: {f"  {value} ({entry['problems']})": entry for value, entry in entries.items()}
                      for name, entries in groups.items()}
        width = max([18] + [len(label) + 2 for rows in group_rows.values() for label in rows])
        lines = [f"{s['problems']} problems; greedy" + (f" + {self.n} samples at temperature "
                                                         f"{self.temperature}" if sampled else "")
                 + f"; at most {self.max_tokens} new tokens; {s['seconds']:.1f} s"
                 + (f"; verifier {self.verifier}" if self.verifier else ""),
                 f"{'':<{width}}{'greedy':>10}" + (f"{'samples':>10}" if sampled else "")]

        def row(name, greedy, sample=None, fmt="{:.4f}"):
            text = f"{name:<{width}}{'' if greedy is None else fmt.format(greedy):>10}"
            return text + (f"{'' if sample is None else fmt.format(sample):>10}" if sampled else "")

        lines.append(row("pass@1", s["greedy_pass_at_1"], s.get("sampled_pass_at_1")))
        if sampled:
            lines.append(row(f"pass@{self.k}", None, s[f"pass_at_{self.k}"]))
        statuses = sorted(set(s["greedy_status_counts"]) | set(s.get("sample_status_counts", {})))
        for status in statuses:
            lines.append(row(status, s["greedy_status_counts"].get(status, 0),
                             s.get("sample_status_counts", {}).get(status, 0), fmt="{}"))
        lines.append(row("mean tokens", s["greedy_mean_tokens"], s.get("sample_mean_tokens"),
                         fmt="{:.1f}"))
        lines.append(row("truncation rate", s["greedy_truncation_rate"],
                         s.get("sample_truncation_rate")))
        for name, rows in group_rows.items():
            lines.append(f"by {name} (problems): greedy pass@1" + (f", pass@{self.k}" if sampled else ""))
            lines += [row(label, entry["greedy_pass_at_1"], entry.get(f"pass_at_{self.k}"))
                      for label, entry in rows.items()]
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """problems.jsonl (one line per problem: its verdicts), summary.json and summary.txt (the table)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"problems": out_dir / "problems.jsonl", "summary": out_dir / "summary.json",
                 "table": out_dir / "summary.txt"}
        with paths["problems"].open("w", encoding="utf-8") as handle:
            for problem in self.problems:
                handle.write(json.dumps(problem.to_json(self.k), ensure_ascii=False) + "\n")
        paths["summary"].write_text(json.dumps(self.summary(), indent=2) + "\n")
        paths["table"].write_text(self.table() + "\n")
        return paths


def _as_records(problems) -> list[PromptRecord]:
    if isinstance(problems, (str, Path)):
        records = read_prompts(problems)
    else:
        problems = list(problems)
        records = (problems if all(isinstance(p, PromptRecord) for p in problems)
                   else records_from_dicts(problems))
    missing = [record.line for record in records if record.gold is None]
    if missing:
        raise ValueError(f"evaluation needs a gold answer for every problem; problem at line "
                         f"{missing[0]} has none ({len(missing)} in all)")
    if not records:
        raise ValueError("no problems to evaluate")
    return records


def _verify(responses: list[str], golds: list[str], finished: list[bool], verifier, verify_fn) -> list:
    """Verdicts from `verifier` (default: a pool running `verify_fn` for this call). Under torch.distributed only
    global rank 0 verifies and broadcasts the verdicts: every rank generated the same responses."""
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    payload = [None]
    if not distributed or dist.get_rank() == 0:
        if verifier is None:
            from oreal_mega.verifier import VerifierPool
            with VerifierPool(verify_fn=verify_fn) as pool:
                payload = [pool.verify_batch(responses, golds, finished)]
        else:
            payload = [verifier.verify_batch(responses, golds, finished)]
    if distributed:
        dist.broadcast_object_list(payload, src=0)
    return payload[0]


def evaluate(engine_or_model_dir: RolloutEngine | str | Path, problems, *, tokenizer=None,
             k: int = 8, n: int | None = None, temperature: float = 1.0, top_p: float = 1.0,
             max_tokens: int = 256, seed: int = 0, system_prompt: str | None = None,
             chat: bool = True, verifier=None, backend: str = "oreal", fallback: str = DEFAULT_FALLBACK,
             group_by: tuple[str, ...] = GROUP_FIELDS, engine_kwargs: dict | None = None,
             progress: bool = False) -> EvalResult:
    """Greedy pass@1 and, with k >= 1, pass@k from n >= k samples per problem.

    `engine_or_model_dir`: a running RolloutEngine (then `tokenizer` is required; the engine
    is left running) or an HF model directory (an engine is built with `engine_kwargs` for
    `VLLMRolloutEngine` and shut down afterwards). `problems`: a JSONL path, PromptRecords, or
    dicts with the prompt-file keys; every problem needs a gold answer. `verifier`: a
    VerifierPool to use (the trainer's); default: a pool of 2 workers for this call, judging with
    `backend` and `fallback` (verifier.backend / verifier.fallback: backends.py; checked before
    generating), which the summary records. Under torch.distributed every rank must call this with
    the same arguments (generation is collective); only global rank 0 verifies, with its
    `verifier` (the other ranks' is not used), and every rank gets its verdicts. `group_by`: the
    record fields the summary breaks pass@1 / pass@k down by (those no problem has are left out).
    """
    n = k if n is None else n
    if k < 0 or n < k or (k == 0 and n != 0):
        raise ValueError(f"need 0 <= k <= n (and n = 0 when k = 0), got k={k}, n={n}")
    if verifier is not None and (backend, fallback) != ("oreal", DEFAULT_FALLBACK):
        raise ValueError("backend and fallback choose evaluate's own pool; a given verifier judges as it was built")
    verify_fn = verify_function(backend, fallback) if verifier is None else None
    records = _as_records(problems)
    own_engine = not isinstance(engine_or_model_dir, RolloutEngine)
    if own_engine:
        from transformers import AutoTokenizer

        from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine
        model_dir = str(engine_or_model_dir)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
        engine = VLLMRolloutEngine(model_dir, **(engine_kwargs or {}))
    elif tokenizer is None:
        raise ValueError("evaluate(engine, ...) needs the policy's tokenizer")
    else:
        engine = engine_or_model_dir

    prompts = encode_prompts(tokenizer, records, chat, system_prompt)
    stop = (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ()
    start = time.perf_counter()
    try:
        greedy = engine.generate(prompts, SamplingConfig(n=1, temperature=0.0, max_tokens=max_tokens,
                                                         stop_token_ids=stop), progress=progress)
        sampled = engine.generate(prompts, SamplingConfig(
            n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
            stop_token_ids=stop), progress=progress) if n else [[] for _ in records]
    finally:
        if own_engine:
            engine.shutdown()

    flat = [(i, sample) for i in range(len(records)) for sample in [greedy[i][0], *sampled[i]]]
    verdicts = _verify([sample.text for _, sample in flat], [records[i].gold for i, _ in flat],
                       [sample.finish_reason == "stop" for _, sample in flat], verifier, verify_fn)

    results, position = [], 0
    for index, record in enumerate(records):
        width = 1 + len(sampled[index])
        mine = verdicts[position:position + width]
        position += width
        results.append(ProblemResult(index, record, greedy[index][0], mine[0], sampled[index], mine[1:]))
    judged_by = None if verifier is not None else backend + (f", fallback {fallback}" if backend == "oreal" else "")
    return EvalResult(results, k, n, temperature, max_tokens, time.perf_counter() - start, tuple(group_by), judged_by)
