"""Parity probe: after a weight sync, do the rollout engine and the trainer compute one policy?

Both score the same fixed probe sequences; `check_parity` compares the per-token log-probs
(max and mean |Δ|) and raises `PolicyParityError` above a threshold, so training stops
instead of optimising with samples from a different policy.

Naming the worst parameter group. Log-probs alone cannot say which weights differ, so the
caller may pass weight fingerprints of both sides, per group (decoder layer `layers.<i>`, or
a top-level tensor such as `model.embed_tokens.weight`): float64 (sum, sum of squares) of
  - every linear layer's output on a fixed probe input inside decoder layers (X Wᵀ + b, with
    X drawn from a generator seeded by the input width) — the engine cannot hand its linear
    weights back (vLLM's CPU backend moves them into oneDNN handles), but it can apply them;
  - the raw elements of everything else (norms, embeddings, lm_head).
Both numbers are additive over output features, so they do not depend on layout: fused
q/k/v or gate/up on the engine side vs separate tensors on the trainer side give the same
value. `trainer_fingerprints` computes them from the HF tensors the trainer sent, the engine
from its own modules. They catch scaled, shifted, stale or missing tensors; they cannot see
bugs that only permute output features (swapped q/k of one shape, a wrong head order). When
no group differs, the error says so: the cause is then a permutation or something outside
the weights (config, tokenizer, numerics).
"""
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from oreal_mega.rollout.buckets import layer_group

Fingerprint = tuple[float, float]  # (sum, sum of squares), float64


class PolicyParityError(RuntimeError):
    """The rollout engine's policy differs from the trainer's beyond the threshold."""


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    mean_abs_diff: float
    tokens: int
    # the worst positions as (sequence, position, engine log-prob, trainer log-prob)
    worst: tuple[tuple[int, int, float, float], ...]
    # groups whose weight fingerprints differ, worst first: (group, relative difference)
    suspect_groups: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        lines = [f"max |Δlogp| {self.max_abs_diff:.3e}, mean {self.mean_abs_diff:.3e} "
                 f"over {self.tokens} tokens"]
        lines += [f"  sequence {s} position {p}: engine {e:.6f} trainer {t:.6f}"
                  for s, p, e, t in self.worst]
        return "\n".join(lines)


def compare_logprobs(engine: list[torch.Tensor], trainer: list[torch.Tensor],
                     worst_count: int = 5) -> ParityReport:
    """Per-token |Δ| between two lists of log-prob vectors (one per probe sequence)."""
    if len(engine) != len(trainer):
        raise ValueError(f"{len(engine)} engine sequences vs {len(trainer)} trainer sequences")
    for index, (a, b) in enumerate(zip(engine, trainer)):
        if a.shape != b.shape:
            raise ValueError(f"probe sequence {index}: engine log-probs {tuple(a.shape)} vs "
                             f"trainer {tuple(b.shape)}")
    diffs = [(a.double() - b.double()).abs() for a, b in zip(engine, trainer)]
    flat = torch.cat(diffs)
    # NaN anywhere is the worst possible mismatch
    flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("inf")), flat)
    where = [(s, p) for s, d in enumerate(diffs) for p in range(d.numel())]
    order = torch.argsort(flat, descending=True)[:worst_count].tolist()
    worst = tuple((where[i][0], where[i][1], float(engine[where[i][0]][where[i][1]]),
                   float(trainer[where[i][0]][where[i][1]])) for i in order)
    return ParityReport(max_abs_diff=float(flat.max()), mean_abs_diff=float(flat.mean()),
                        tokens=flat.numel(), worst=worst)


def probe_input(in_features: int, rows: int = 4) -> torch.Tensor:
    """The fixed float64 input that fingerprints a linear layer of this input width."""
    generator = torch.Generator().manual_seed(in_features)
    return torch.randn(rows, in_features, generator=generator, dtype=torch.float64)


class FingerprintAccumulator:
    """Sums (Σx, Σx²) of tensors into their `layer_group`, in float64."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, values: torch.Tensor, scale: float = 1.0) -> None:
        values = values.detach().to(torch.float64)
        entry = self.sums.setdefault(layer_group(name), [0.0, 0.0])
        entry[0] += scale * float(values.sum())
        entry[1] += scale * float(values.square().sum())

    def result(self) -> dict[str, Fingerprint]:
        return {group: (total, squares) for group, (total, squares) in self.sums.items()}


def is_layer_linear_weight(name: str, tensor: torch.Tensor) -> bool:
    """A 2-D `.weight` inside a decoder layer: a linear layer in every supported model."""
    return name.endswith(".weight") and tensor.ndim == 2 and layer_group(name) != name


def trainer_fingerprints(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, Fingerprint]:
    """Fingerprints of HF-named tensors (what the trainer sent); see the module docstring."""
    tensors = dict(named_tensors)
    accumulator = FingerprintAccumulator()
    for name, tensor in tensors.items():
        if is_layer_linear_weight(name, tensor):
            output = probe_input(tensor.shape[1]) @ tensor.double().T
            bias = tensors.get(name.removesuffix("weight") + "bias")
            accumulator.add(name, output if bias is None else output + bias.double())
        elif name.endswith(".bias") and is_layer_linear_weight(
                name.removesuffix("bias") + "weight",
                tensors.get(name.removesuffix("bias") + "weight", tensor)):
            continue  # counted in its linear layer's output
        else:
            accumulator.add(name, tensor)
    return accumulator.result()


def suspect_groups(trainer: Mapping[str, Fingerprint], engine: Mapping[str, Fingerprint],
                   tolerance: float = 1e-5) -> list[tuple[str, float]]:
    """Groups on both sides whose fingerprints differ by more than `tolerance` (relative),
    worst first. (A group on one side only, e.g. lm_head.weight sent for a tied model, is
    not compared.)"""
    suspects = []
    for group in sorted(set(trainer) & set(engine)):
        (sum_t, sq_t), (sum_e, sq_e) = trainer[group], engine[group]
        scale = max(sq_t, 1e-30)
        # sum of squares compares magnitudes; the sum, normalised by the group's RMS mass,
        # catches shifts that keep magnitudes similar
        difference = max(abs(sq_e - sq_t) / scale, abs(sum_e - sum_t) / scale ** 0.5)
        if difference > tolerance:
            suspects.append((group, difference))
    return sorted(suspects, key=lambda item: -item[1])


def check_parity(engine: list[torch.Tensor], trainer: list[torch.Tensor], threshold: float,
                 trainer_fp: Mapping[str, Fingerprint] | None = None,
                 engine_fp: Mapping[str, Fingerprint] | None = None,
                 fingerprint_tolerance: float = 1e-5) -> ParityReport:
    """Compare log-probs; above `threshold` raise PolicyParityError naming the positions and,
    when both sides' fingerprints are given (`trainer_fingerprints(sent tensors)`,
    `engine.weight_fingerprints()`), the worst parameter group. `fingerprint_tolerance` is
    relative: about 1e-5 for an fp32 engine, 1e-2 for bf16."""
    report = compare_logprobs(engine, trainer)
    if report.max_abs_diff <= threshold:
        return report
    message = f"rollout/trainer policy mismatch above {threshold:.1e}: {report.describe()}"
    if trainer_fp is not None and engine_fp is not None:
        suspects = tuple(suspect_groups(trainer_fp, engine_fp, fingerprint_tolerance))
        report = ParityReport(**{**report.__dict__, "suspect_groups": suspects})
        if suspects:
            listed = ", ".join(f"{group} (rel. diff {diff:.2e})" for group, diff in suspects[:5])
            message += f"\nworst parameter group: {suspects[0][0]}; weights differ in: {listed}"
        else:
            message += ("\nno parameter group's weight fingerprints differ: a permutation/layout "
                        "error in the sync, or a cause outside the weights")
    else:
        message += "\n(no weight fingerprints given: cannot name a parameter group)"
    raise PolicyParityError(message)
