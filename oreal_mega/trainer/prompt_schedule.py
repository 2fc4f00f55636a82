"""Which prompts each step trains on. The order is a pure function of (seed, step) — difficulty-
balanced repetition, then a seeded shuffle per epoch — so a resumed run needs no loader state."""
import torch

from oreal_mega.errors import UserError
from oreal_mega.objective import ObjectiveConfig, difficulty_balanced_prompts


class PromptSchedule:
    def __init__(self, records: list, per_step: int, objective: ObjectiveConfig, balance: bool,
                 seed: int, source: str):
        if balance:
            missing = [r.line for r in records if r.pass_rate is None]
            if missing:
                raise UserError(f"{source}: data.difficulty_balance needs a pass_rate on every line; "
                                f"line {missing[0]} has none (set data.difficulty_balance=false)")
            pool = difficulty_balanced_prompts([r.pass_rate for r in records], objective.difficulty_buckets)
        else:
            pool = list(range(len(records)))
        if not pool:
            raise UserError(f"{source}: no prompt is left after difficulty balancing (all pass_rate ≥ 0.8?)")
        self.records, self.pool, self.per_step, self.seed = records, pool, per_step, seed

    def _epoch_order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return [self.pool[i] for i in torch.randperm(len(self.pool), generator=gen).tolist()]

    def for_step(self, step: int) -> list:
        start = step * self.per_step
        chosen = []
        while len(chosen) < self.per_step:
            epoch, offset = divmod(start + len(chosen), len(self.pool))
            order = self._epoch_order(epoch)
            chosen.extend(order[offset: offset + self.per_step - len(chosen)])
        return [self.records[i] for i in chosen]
