"""Can a token-level RM learn this task at all? An offline probe on rollout dumps.

The in-loop token-RM sees one positive/negative pair per mixed prompt, once. This probe asks how
much data, which learning rate and which initialisation it needs: it reads `rollout.dump_dir` files
(any run; a run with the actor frozen gives i.i.d. samples of one policy), splits the prompts into a
training and a held-out half, and trains the RM exactly as the trainer defines it — the policy's
trunk with a zero-initialised Linear(hidden → 1) head, loss BCE(σ(mean_t s_t), correct) per response
(`oreal_mega.objective.trm_loss`) — with AdamW for some epochs. After each epoch it prints, on the
held-out responses, the verdict accuracy, the pair accuracy (same prompt, positive above negative)
and the error-localisation AUC against the task oracle (`oreal_mega.objective.rm_diagnostics`).

    python examples/tiny/rm_probe.py --dumps RUN/dumps --prompts DATA/rl_prompts.jsonl --model SFT/hf \
        --lr 1e-3 --epochs 8 --train-on all
"""
import argparse
import json
import random
import time

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from oreal_mega.objective import (PackedResponses, correctness_probability, error_localisation, pair_accuracy,
                                  reference_logprob_feature, sequence_mean_logit, trm_loss)
from oreal_mega.rollout.dump import dumped_steps, read_step
from oreal_mega.tasks.oracle import first_error_token, response_token_texts


def load_rollouts(dumps: str, prompts: str, tokenizer) -> list[dict]:
    """Every dumped response with its label, prompt key and the oracle's first error (−1: none)."""
    solutions = {}
    for line in open(prompts, encoding="utf-8"):
        record = json.loads(line)
        solutions[record["question"]] = record["solution"]
    rollouts = []
    for step in dumped_steps(dumps):
        for group in read_step(dumps, step):
            prompt_text = tokenizer.decode(group.prompt_ids)
            question = next((q for q in solutions if q in prompt_text), None)
            for sample, verdict in zip(group.samples, group.verdicts):
                correct = verdict == "correct"
                error = None if correct or question is None else first_error_token(
                    solutions[question], response_token_texts(tokenizer, sample.token_ids),
                    sample.finish_reason == "stop")
                rollouts.append({"key": (step, tuple(group.prompt_ids)), "prompt": list(group.prompt_ids),
                                 "response": list(sample.token_ids), "correct": correct,
                                 "first_error": -1 if error is None else error})
    return rollouts


def mixed_prompts(rollouts: list[dict], rng: random.Random | None = None) -> list[dict]:
    """The responses of prompts with both outcomes: all of them, or (given `rng`) one random correct
    and one random wrong response per prompt (the trainer's keep_pairs)."""
    by_prompt = {}
    for r in rollouts:
        by_prompt.setdefault(r["key"], []).append(r)
    kept = []
    for group in by_prompt.values():
        good = [r for r in group if r["correct"]]
        bad = [r for r in group if not r["correct"]]
        if good and bad:
            kept += [rng.choice(good), rng.choice(bad)] if rng else group
    return kept


class TokenRM(torch.nn.Module):
    """The trunk of an HF causal LM and the trainer's zero-initialised value head; with
    `reference_input`, also the trainer's reference log-prob feature (objective.trm_input =
    'hidden+reference_logprob'): the frozen starting model as the reference and a scalar weight from 1."""

    def __init__(self, model_dir: str, reference_input: bool = False):
        super().__init__()
        self.trunk = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
        self.head = torch.nn.Linear(self.trunk.config.hidden_size, 1, bias=False)
        torch.nn.init.zeros_(self.head.weight)
        self.reference = self.reference_weight = None
        if reference_input:
            self.reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            self.reference.requires_grad_(False)
            self.reference_weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, rollouts: list[dict]) -> tuple[torch.Tensor, PackedResponses]:
        """Packed [T] logits s_t, each from the state that predicts token t (as the trainer's)."""
        sequences = [r["prompt"] + r["response"] for r in rollouts]
        width = max(map(len, sequences))
        ids = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        hidden = self.trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        scores = self.head(hidden).squeeze(-1)  # [B, L]: position j scores token j + 1
        logits = torch.cat([torch.cat([scores.new_zeros(1), scores[b, :len(s) - 1]])
                            for b, s in enumerate(sequences)])
        batch = PackedResponses.from_lengths([len(r["prompt"]) for r in rollouts],
                                             [len(r["response"]) for r in rollouts],
                                             [r["correct"] for r in rollouts],
                                             [0.0] * len(rollouts), [0.0] * len(rollouts))
        if self.reference is not None:
            with torch.no_grad():
                logp = torch.log_softmax(self.reference(input_ids=ids, attention_mask=mask).logits.float(), -1)
                token_logp = logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)  # position j: log p(token j + 1)
            stream = torch.cat([torch.cat([token_logp.new_zeros(1), token_logp[b, :len(s) - 1]])
                                for b, s in enumerate(sequences)])
            logits = logits + self.reference_weight * reference_logprob_feature(stream, batch)
        return logits, batch


@torch.no_grad()
def evaluate(model: TokenRM, rollouts: list[dict], batch_size: int) -> dict:
    correct = total = wins = pairs = auc_sum = measured = 0.0
    keys = {k: i for i, k in enumerate(dict.fromkeys(r["key"] for r in rollouts))}
    for start in range(0, len(rollouts), batch_size):
        chunk = rollouts[start:start + batch_size]
        logits, batch = model(chunk)
        verdict = sequence_mean_logit(logits, batch)
        correct += ((verdict > 0) == batch.is_positive).sum().item()
        total += len(chunk)
        w, p = pair_accuracy(verdict, batch.is_positive, torch.tensor([keys[r["key"]] for r in chunk]))
        wins, pairs = wins + w.item(), pairs + p.item()
        a, m = error_localisation(correctness_probability(logits, batch), batch,
                                  torch.tensor([r["first_error"] for r in chunk]))
        auc_sum, measured = auc_sum + a.item(), measured + m.item()
    return {"accuracy": correct / total, "pair_accuracy": wins / max(pairs, 1),
            "error_auc": auc_sum / max(measured, 1),
            "majority": max(sum(r["correct"] for r in rollouts), sum(not r["correct"] for r in rollouts)) / total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dumps", required=True)
    parser.add_argument("--prompts", required=True, help="the task's rl_prompts.jsonl (the oracle's solutions)")
    parser.add_argument("--model", required=True, help="HF directory of the policy the RM starts from")
    parser.add_argument("--train-on", choices=("pairs", "mixed", "all"), default="pairs",
                        help="pairs: one pair per prompt with both outcomes (the trainer's data); mixed: "
                             "every response of those prompts; all: every response")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head-lr", type=float, help="default: --lr")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=96, help="responses per optimizer step")
    parser.add_argument("--max-train", type=int, default=0, help="cap on training responses (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-input", action="store_true",
                        help="the RM also sees the reference log-prob feature (trm_input: hidden+reference_logprob); "
                             "epoch 0 then scores the feature alone")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rollouts = load_rollouts(args.dumps, args.prompts, tokenizer)
    keys = sorted(set(r["key"] for r in rollouts))
    rng.shuffle(keys)
    held_out_keys = set(keys[: len(keys) // 2])
    train = [r for r in rollouts if r["key"] not in held_out_keys]
    held_out = mixed_prompts([r for r in rollouts if r["key"] in held_out_keys], random.Random(1))
    if args.train_on != "all":
        train = mixed_prompts(train, rng if args.train_on == "pairs" else None)
    if args.max_train:
        train = train[: args.max_train]
    model = TokenRM(args.model, args.reference_input)
    head = list(model.head.parameters()) + ([model.reference_weight] if args.reference_input else [])
    optimizer = torch.optim.AdamW([{"params": model.trunk.parameters(), "lr": args.lr},
                                   {"params": head, "lr": args.head_lr or args.lr}], weight_decay=0.0)
    print(f"train {len(train)} responses ({args.train_on}), held-out {len(held_out)} (pairs of "
          f"{len(held_out) // 2} prompts); lr {args.lr}, head lr {args.head_lr or args.lr}, batch {args.batch}")
    print(f"epoch 0: {json.dumps({k: round(v, 4) for k, v in evaluate(model, held_out, 256).items()})}", flush=True)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        losses = []
        for first in range(0, len(train), args.batch):
            chunk = train[first:first + args.batch]
            logits, batch = model(chunk)
            loss = trm_loss(logits, batch, len(chunk))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        stats = evaluate(model, held_out, 256)
        print(f"epoch {epoch}: train loss {sum(losses) / len(losses):.4f}, held-out "
              f"{json.dumps({k: round(v, 4) for k, v in stats.items()})} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
