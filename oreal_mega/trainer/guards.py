"""Run guards: a step whose loss or gradients are not finite is skipped (logged), and the run stops
after K such steps in a row; a verifier that rewards nothing for several steps raises a warning."""
import warnings

import torch
import torch.distributed as dist

from oreal_mega.models.ddp import zero_grads


class NonFiniteTrainingError(RuntimeError):
    pass


class StepGuard:
    def __init__(self, max_consecutive_bad: int):
        self.max_bad = max_consecutive_bad
        self.bad_steps: list[int] = []

    def finite(self, outputs: list[dict], chunks, step: int, what: str) -> bool:
        """Collective. True when every rank's losses and gradients are finite; otherwise the
        gradients are dropped (the optimizer must not step) and the step is counted as bad."""
        ok = all(bool(torch.isfinite(torch.as_tensor(m["loss"])).all()) for m in outputs)
        ok = ok and all(bool(torch.isfinite(b.grad_data).all()) for c in chunks for b in c.buffers)
        flag = torch.tensor([1.0 if ok else 0.0], device=chunks[0].buffers[0].grad_data.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() == 1.0:
            if self.bad_steps and self.bad_steps[-1] < step - 1:
                self.bad_steps.clear()
            return True
        zero_grads(chunks)
        if not self.bad_steps or self.bad_steps[-1] != step:
            if self.bad_steps and self.bad_steps[-1] != step - 1:
                self.bad_steps.clear()
            self.bad_steps.append(step)
        if dist.get_rank() == 0:
            warnings.warn(f"step {step}: non-finite {what} loss or gradient; update skipped "
                          f"({len(self.bad_steps)} bad step(s) in a row)")
        if len(self.bad_steps) >= self.max_bad:
            raise NonFiniteTrainingError(f"stopping at step {step}: {len(self.bad_steps)} consecutive steps "
                                         f"with non-finite loss or gradients (train.max_consecutive_bad_steps)")
        return False



class ZeroRewardWatch:
    """Warns when the verifier has rewarded nothing for `warn_after` steps in a row."""

    def __init__(self, warn_after: int):
        self.warn_after, self.zero_steps = warn_after, 0

    def observe(self, pass_rate: float, step: int) -> None:
        self.zero_steps = self.zero_steps + 1 if pass_rate == 0 else 0
        if self.zero_steps >= self.warn_after and dist.get_rank() == 0:
            warnings.warn(f"step {step}: the verifier has found no correct rollout for "
                          f"{self.zero_steps} steps (check the answer format / system prompt)")
