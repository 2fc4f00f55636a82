"""Parity: after a weight sync, do the rollout engine and the trainer compute one policy?

The contract (checked by `ColocatedRollout` after every `rollout.parity_every`-th sync, with the
levels of `ParityLevels.for_dtype(model.dtype)` unless the config sets them):

- Wrong weights stop the run. Both sides fingerprint the weights per parameter group (decoder
  layer `layers.<i>`, or a top-level tensor such as `model.embed_tokens.weight`); a group whose
  fingerprints differ by more than `fingerprint_tolerance` (relative) means the engine holds other
  weights than the trainer sent (a layer not loaded, a mis-sliced shard, a scaled tensor):
  `PolicyParityError` naming the group(s).
- Numerical drift is measured, logged and warned. Both sides score the probe sequences; the
  per-token |Δ log p| statistics (mean, p99, max) are metrics of every probe. With matching
  fingerprints, a mean |Δ| above `warn_mean` is drift between two kernel stacks: a warning, and
  training continues.
- A gross mismatch with matching fingerprints stops the run: a mean |Δ| above `stop_mean` is more
  than rounding explains, and no weight group differs — a permutation in the sync (fingerprints
  cannot see one: swapped q/k of one shape, a wrong head order) or a config / tokenizer mismatch.

Fingerprints: per group, float64 (Σy, Σ|y|, Σy²) of
  - every linear layer's output on a fixed probe input inside decoder layers (y = X Wᵀ + b, X with
    ±1 entries from a generator seeded by the input width) — the engine cannot hand its linear
    weights back (vLLM's CPU backend moves them into oneDNN handles), but it can apply them;
  - the raw elements of everything else (norms, embeddings, lm_head).
All three sums are additive over output features, so they do not depend on layout: fused q/k/v or
gate/up on the engine side vs separate tensors on the trainer side, or the engine's tensor-parallel
shards summed over its TP group (vllm_engine.py), give the same value. The trainer side
(`SentFingerprints`) fingerprints the tensors as they stream through the sync, in float64.

Defaults, from the unit roundoff u of the model dtype (fp32 2^-24, fp16 2^-11, bf16 2^-8):
- fingerprint_tolerance = 4u + 1e-5 (fp32 1.02e-5, fp16 2.0e-3, bf16 1.6e-2). X is exact in every
  dtype and both sides hold the same weight values, so the engine's only errors are the rounding of
  its outputs to the model dtype (|δ| ≤ u per element, ≤ 2u where a bias add or the row-parallel
  all-reduce rounds again), which moves Σy² by at most 2·2u relative and Σy, Σ|y| by at most 2u of
  Σ|y|; 1e-5 covers fp32 accumulation in its GEMMs (≈ 2^-24·√n for n inputs, n ≲ 3·10^4). This is
  a worst-case bound: the roundings' errors mostly cancel over a group's outputs (measured: 3e-5 for
  a bf16 vLLM on CPU, 1e-8 for fp32), which leaves room for an all-reduce over many ranks that rounds
  more than twice. A difference smaller than the tolerance is invisible: a stale layer is caught once
  the trainer has moved it by more than that.
- bf16 / fp16: warn_mean = 16u, stop_mean = 128u (bf16 0.0625 / 0.5, fp16 0.0078 / 0.0625). Two bf16
  stacks (other kernels, fused QKV, other reduction orders) differ by a few u per token on average,
  with per-token maxima far above the mean, which is why only the mean decides: a bf16 vLLM on CPU
  against a float64 forward of the same weights measured mean 0.035 (9u), max 0.14 on the tests' tiny
  model with large random weights; N(0, 0.02) noise per token, the tests' bf16 stand-in, is a mean of
  0.016 (4u). Users of other bf16 RL stacks report rollout-vs-trainer KLs of 1e-3 to 1e-2 (not
  measured here), a mean |Δ| of about 0.04 to 0.1 for Gaussian-like Δ: warned, not stopped. At 128u the average probability ratio
  per token is e^0.5 ≈ 1.65, and the importance ratios are no longer near 1; a permutation or a
  tokenizer mismatch is worth nats per token.
- fp32: warn_mean = 2^-14 (≈ 6.1e-5), stop_mean = 2^-10 (≈ 9.8e-4). fp32 stacks differ by their
  reduction orders (≈ √n·u per reduction, compounded over the layers and the vocabulary softmax), not
  by stored roundings: vLLM on CPU against megatron on gloo measured a mean of 2e-6 and a max of 1e-5
  per token (tests/test_train_loop.py's runs); the levels sit 30 and 500 times above. TF32 must stay off
  on both sides (torch's and vLLM's default).
"""
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from oreal_mega.rollout.buckets import layer_group

Fingerprint = tuple[float, float, float]  # float64 (Σy, Σ|y|, Σy²)

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
PROBE_ROWS = 8
_CHUNK_ELEMENTS = 1 << 24  # float64 copies are made chunk by chunk: at most 128 MB at a time


class PolicyParityError(RuntimeError):
    """The rollout engine's policy differs from the trainer's: wrong weights, or a log-prob
    mismatch that no rounding explains."""


@dataclass(frozen=True)
class ParityLevels:
    """When the parity probe warns and stops; `for_dtype` gives the documented defaults."""

    dtype: str
    warn_mean: float  # mean |Δ log p| per token above which drift is warned
    stop_mean: float  # ... above which the run stops although no weight group differs
    fingerprint_tolerance: float  # relative fingerprint difference above which weights differ

    @classmethod
    def for_dtype(cls, dtype: str, warn_mean: float | None = None, stop_mean: float | None = None,
                  fingerprint_tolerance: float | None = None) -> "ParityLevels":
        """The levels of a model dtype (see the module docstring); arguments that are not None win."""
        if dtype not in UNIT_ROUNDOFF:
            raise ValueError(f"no parity levels for dtype {dtype!r} (one of {', '.join(UNIT_ROUNDOFF)})")
        u = UNIT_ROUNDOFF[dtype]
        default_warn, default_stop = (2.0 ** -14, 2.0 ** -10) if dtype == "float32" else (16 * u, 128 * u)
        return cls(dtype, default_warn if warn_mean is None else warn_mean,
                   default_stop if stop_mean is None else stop_mean,
                   4 * u + 1e-5 if fingerprint_tolerance is None else fingerprint_tolerance)


# -- log-prob statistics -----------------------------------------------------------------------

@dataclass(frozen=True)
class LogprobStats:
    """Per-token |Δ log p| between the engine and the trainer over the probe sequences. `p99_abs` is
    the 99th percentile (an observed value: over fewer than 100 tokens it is the max)."""

    mean_abs: float
    p99_abs: float
    max_abs: float
    tokens: int
    # the worst positions as (sequence, position, engine log-prob, trainer log-prob)
    worst: tuple[tuple[int, int, float, float], ...]

    def describe(self) -> str:
        return (f"mean |Δlogp| {self.mean_abs:.3e}, p99 {self.p99_abs:.3e}, max {self.max_abs:.3e} "
                f"over {self.tokens} tokens")

    def describe_worst(self) -> str:
        return "\n".join(f"  sequence {s} position {p}: engine {e:.6f} trainer {t:.6f}"
                         for s, p, e, t in self.worst)


def compare_logprobs(engine: list[torch.Tensor], trainer: list[torch.Tensor],
                     worst_count: int = 5) -> LogprobStats:
    """Per-token |Δ| between two lists of log-prob vectors (one per probe sequence)."""
    if len(engine) != len(trainer):
        raise ValueError(f"{len(engine)} engine sequences vs {len(trainer)} trainer sequences")
    for index, (a, b) in enumerate(zip(engine, trainer)):
        if a.shape != b.shape:
            raise ValueError(f"probe sequence {index}: engine log-probs {tuple(a.shape)} vs "
                             f"trainer {tuple(b.shape)}")
    diffs = [(a.double().cpu() - b.double().cpu()).abs() for a, b in zip(engine, trainer)]
    flat = torch.cat(diffs)
    # NaN anywhere is the worst possible mismatch
    flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("inf")), flat)
    where = [(s, p) for s, d in enumerate(diffs) for p in range(d.numel())]
    order = torch.argsort(flat, descending=True)[:worst_count].tolist()
    worst = tuple((where[i][0], where[i][1], float(engine[where[i][0]][where[i][1]]),
                   float(trainer[where[i][0]][where[i][1]])) for i in order)
    return LogprobStats(mean_abs=float(flat.mean()),
                        p99_abs=float(torch.quantile(flat, 0.99, interpolation="higher")),
                        max_abs=float(flat.max()), tokens=flat.numel(), worst=worst)


# -- weight fingerprints -----------------------------------------------------------------------

def probe_input(in_features: int, rows: int = PROBE_ROWS) -> torch.Tensor:
    """The fixed float64 input that fingerprints a linear layer of this input width: ±1 entries,
    exact in every float dtype, so an engine applies its weights to exactly this input."""
    generator = torch.Generator().manual_seed(in_features)
    signs = torch.randint(0, 2, (rows, in_features), generator=generator, dtype=torch.int64)
    return (2 * signs - 1).to(torch.float64)


def linear_probe_output(weight: torch.Tensor) -> torch.Tensor:
    """probe_input @ weightᵀ in float64 on the weight's device, output rows chunk by chunk."""
    probe = probe_input(weight.shape[1]).to(weight.device)
    rows = max(1, _CHUNK_ELEMENTS // weight.shape[1])
    return torch.cat([probe @ part.detach().double().T for part in weight.split(rows)], dim=1)


class FingerprintAccumulator:
    """Sums (Σx, Σ|x|, Σx²) of tensors into their `layer_group`, in float64; `scale` weighs a
    contribution (an engine rank's share of elements that several ranks hold)."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, values: torch.Tensor, scale: float = 1.0) -> None:
        entry = self.sums.setdefault(layer_group(name), [0.0, 0.0, 0.0])
        for part in values.detach().reshape(-1).split(_CHUNK_ELEMENTS):
            part = part.double()
            entry[0] += scale * float(part.sum())
            entry[1] += scale * float(part.abs().sum())
            entry[2] += scale * float(part.square().sum())

    def result(self) -> dict[str, Fingerprint]:
        return {group: tuple(sums) for group, sums in self.sums.items()}


def sum_fingerprints(parts: Iterable[Mapping[str, Fingerprint]]) -> dict[str, Fingerprint]:
    """Group-wise sum of partial fingerprints (an engine's TP ranks), in the order given."""
    total: dict[str, list[float]] = {}
    for part in parts:
        for group, values in part.items():
            entry = total.setdefault(group, [0.0, 0.0, 0.0])
            for i, value in enumerate(values):
                entry[i] += value
    return {group: tuple(sums) for group, sums in total.items()}


def is_layer_linear_weight(name: str, tensor: torch.Tensor) -> bool:
    """A 2-D `.weight` inside a decoder layer: a linear layer in every supported model."""
    return name.endswith(".weight") and tensor.ndim == 2 and layer_group(name) != name


class SentFingerprints:
    """Fingerprints of the HF-named tensors the trainer sends, taken as they stream through the sync
    (no second export): `engine.update_weights(sent.watch(policy.hf_tensors()))`, then `result()`.
    A linear layer's probe output is kept until the end, so its bias is added whether it streams
    before or after the weight; a layer bias without a linear weight counts as raw elements."""

    def __init__(self):
        self._outputs: dict[str, torch.Tensor] = {}  # linear layer prefix -> float64 probe output
        self._biases: dict[str, torch.Tensor] = {}  # layer prefix -> float64 copy of its bias
        self._raw = FingerprintAccumulator()

    def watch(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in named_tensors:
            self.add(name, tensor)
            yield name, tensor

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if is_layer_linear_weight(name, tensor):
            self._outputs[name.removesuffix("weight")] = linear_probe_output(tensor)
        elif name.endswith(".bias") and layer_group(name) != name:
            self._biases[name.removesuffix("bias")] = tensor.detach().to(torch.float64, copy=True)
        else:
            self._raw.add(name, tensor)

    def result(self) -> dict[str, Fingerprint]:
        linear = FingerprintAccumulator()
        for prefix, output in self._outputs.items():
            bias = self._biases.get(prefix)
            linear.add(prefix + "weight", output if bias is None else output + bias)
        for prefix, bias in self._biases.items():
            if prefix not in self._outputs:
                linear.add(prefix + "bias", bias)
        return sum_fingerprints([self._raw.result(), linear.result()])


def trainer_fingerprints(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, Fingerprint]:
    """Fingerprints of a complete set of HF-named tensors (what `SentFingerprints` sees in a sync)."""
    sent = SentFingerprints()
    for name, tensor in named_tensors:
        sent.add(name, tensor)
    return sent.result()


def relative_difference(trainer: Fingerprint, engine: Fingerprint) -> float:
    """How far two fingerprints of one group are apart: Σy² relative to itself, Σy and Σ|y|
    relative to Σ|y| (the scale the rounding bound of the module docstring is stated in)."""
    (sum_t, abs_t, sq_t), (sum_e, abs_e, sq_e) = trainer, engine
    differences = (abs(sq_e - sq_t) / max(sq_t, 1e-300), abs(sum_e - sum_t) / max(abs_t, 1e-300),
                   abs(abs_e - abs_t) / max(abs_t, 1e-300))
    return math.inf if any(math.isnan(d) for d in differences) else max(differences)


def weight_differences(trainer: Mapping[str, Fingerprint], engine: Mapping[str, Fingerprint]
                       ) -> list[tuple[str, float]]:
    """(group, relative difference) of every group on both sides, largest first. (A group on one
    side only, e.g. lm_head.weight sent for a tied model, is not compared.)"""
    differences = [(group, relative_difference(trainer[group], engine[group]))
                   for group in sorted(set(trainer) & set(engine))]
    return sorted(differences, key=lambda item: -item[1])


# -- the decision ------------------------------------------------------------------------------

OUTCOMES = ("ok", "drift", "unexplained", "wrong_weights")  # in rising severity


@dataclass(frozen=True)
class ParityVerdict:
    outcome: str  # one of OUTCOMES
    stats: LogprobStats
    levels: ParityLevels
    differing_groups: tuple[tuple[str, float], ...]  # above the tolerance, largest first
    largest_weight_difference: float | None  # over all compared groups; None without fingerprints

    @property
    def stops(self) -> bool:
        return self.outcome in ("unexplained", "wrong_weights")

    def metrics(self) -> dict:
        metrics = {"parity_mean_abs": self.stats.mean_abs, "parity_p99_abs": self.stats.p99_abs,
                   "parity_max_abs": self.stats.max_abs}
        if self.largest_weight_difference is not None:
            metrics["parity_weight_rel_diff"] = self.largest_weight_difference
        return metrics

    def message(self) -> str:
        levels, stats = self.levels, self.stats
        tolerance = f"tolerance {levels.fingerprint_tolerance:.1e} for {levels.dtype}"
        if self.outcome == "wrong_weights":
            listed = ", ".join(f"{group} (relative difference {diff:.2e})"
                               for group, diff in self.differing_groups[:5])
            more = f" and {len(self.differing_groups) - 5} more" if len(self.differing_groups) > 5 else ""
            return (f"the rollout engine's weights differ from the trainer's in {listed}{more} ({tolerance}); "
                    f"probe log-probs: {stats.describe()}\n{stats.describe_worst()}")
        if self.largest_weight_difference is None:
            weights = "no weight fingerprints were compared"
        else:
            weights = (f"no parameter group's weight fingerprints differ (largest relative difference "
                       f"{self.largest_weight_difference:.2e}, {tolerance})")
        if self.outcome == "unexplained":
            return (f"rollout/trainer log-probs differ beyond numerical drift: {stats.describe()}; mean above "
                    f"rollout.parity_stop_mean {levels.stop_mean:.2e}, but {weights}: a permutation in the "
                    f"sync (fingerprints cannot see one), or a config or tokenizer mismatch\n"
                    f"{stats.describe_worst()}")
        return (f"parity probe: numerical drift, {stats.describe()}: mean above rollout.parity_warn_mean "
                f"{levels.warn_mean:.2e} ({weights}); training continues")


def judge_parity(engine: list[torch.Tensor], trainer: list[torch.Tensor], levels: ParityLevels,
                 trainer_fp: Mapping[str, Fingerprint] | None = None,
                 engine_fp: Mapping[str, Fingerprint] | None = None) -> ParityVerdict:
    """Classify one probe: wrong weights (some group's fingerprints differ beyond the tolerance,
    whatever the log-probs say), unexplained (no group differs, mean |Δ| above stop_mean), drift
    (mean above warn_mean) or ok. Without fingerprints only the log-prob levels apply."""
    stats = compare_logprobs(engine, trainer)
    differing, largest = (), None
    if trainer_fp is not None and engine_fp is not None:
        differences = weight_differences(trainer_fp, engine_fp)
        largest = differences[0][1] if differences else 0.0
        differing = tuple((group, diff) for group, diff in differences if diff > levels.fingerprint_tolerance)
    if differing:
        outcome = "wrong_weights"
    elif stats.mean_abs > levels.stop_mean:
        outcome = "unexplained"
    elif stats.mean_abs > levels.warn_mean:
        outcome = "drift"
    else:
        outcome = "ok"
    return ParityVerdict(outcome, stats, levels, differing, largest)


def worst_verdict(verdicts: list[ParityVerdict]) -> tuple[int, ParityVerdict]:
    """(index, verdict) of the most severe of several ranks' verdicts (then the largest mean |Δ|):
    the one every rank acts on, so that all stop together or none does."""
    return max(enumerate(verdicts), key=lambda item: (OUTCOMES.index(item[1].outcome), item[1].stats.mean_abs))


def check_parity(engine: list[torch.Tensor], trainer: list[torch.Tensor], levels: ParityLevels,
                 trainer_fp: Mapping[str, Fingerprint] | None = None,
                 engine_fp: Mapping[str, Fingerprint] | None = None) -> ParityVerdict:
    """`judge_parity` for one process: raises PolicyParityError when the verdict stops."""
    verdict = judge_parity(engine, trainer, levels, trainer_fp, engine_fp)
    if verdict.stops:
        raise PolicyParityError(verdict.message())
    return verdict
