"""Every knob of the OREAL objective, with the reference code's defaults.

Defaults reproduce `oreal_w_tokenrm_OREAL-7B-SFT_seqlen16k.py` of InternLM/OREAL (commit 2859cc0).
Symbols and formulas: ALGORITHM.md in this folder; README.md here has the key table.
"""
import math
from dataclasses import dataclass
from typing import ClassVar

from oreal_mega.errors import UserError
from oreal_mega.kernels import KL_TYPES

MODES = ("code", "paper")
ADVANTAGE_TYPES = ("rloo", "grpo", "reinforce")
TOKEN_WEIGHT_TYPES = ("threshold", "topk", "none", "oracle")
TRM_INPUTS = ("hidden", "hidden+reference_logprob")
POLICY_NORMALIZERS = ("split", "joint")

# (low, high, repeat): a prompt with low <= pass_rate < high is repeated `repeat` times; others are dropped.
CODE_DIFFICULTY_BUCKETS = ((0.0, 0.2, 6), (0.2, 0.4, 4), (0.4, 0.6, 4), (0.6, 0.8, 2))


@dataclass(frozen=True)
class ObjectiveConfig:
    """OREAL objective settings. Each field documents its paper symbol."""

    mode: str = "code"
    """'code': the objective of the authors' train_oreal.py (§1.2);
    'paper': Eq. 11 with (1−p)-reshaped negatives (§1.1)."""
    reward_correct: float = 1.0
    """r for a correct rollout. Code +1; paper 1."""
    reward_wrong: float = -1.0
    """r for a wrong, unanswered, truncated, timed-out or unverifiable rollout. Code −1; paper 0."""
    advantage_type: str = "rloo"
    """Advantage A from the K rewards of a prompt: 'rloo' r_k − mean_{j≠k} r_j;
    'grpo' (r − mean)/(std + 1e-8); 'reinforce' r."""
    filter_trajectory: bool = True
    """Drop prompts whose pass rate p = c/K is 0 or 1."""
    keep_pairs: bool = True
    """Keep one random correct and one random incorrect rollout per remaining prompt (needs filter_trajectory)."""
    selection_seed: int = 0
    """Seed of the pair-selection RNG (the code's `seed`); the trainer offsets it by the step."""
    difficulty_buckets: tuple[tuple[float, float, int], ...] = CODE_DIFFICULTY_BUCKETS
    """Prompt-loader repetition by recorded pass rate: (low, high, repeat), half-open; outside all → dropped."""
    pos_mult_adv: bool | None = None
    """Multiply the positive BC term by A+. None = the mode's default (code: True, paper: False)."""
    positive_loss_factor: float = 1.0
    """λ+: weight of the positive (behaviour-cloning) term."""
    negative_loss_factor: float = 0.5
    """η: weight of the negative (policy-gradient) term."""
    policy_normalizer: str = "split"
    """'split': term (a) / N+ and term (b) / N− (OREAL: positives are cloned at full weight however rare);
    'joint': both / N, the token-mean policy gradient of REINFORCE/GRPO baselines (for ablations)."""
    kl_coef: float = 0.01
    """β: weight of the KL penalty to the frozen reference policy π0."""
    kl_type: str = "k3"
    """Per-token KL estimator, d = ℓ^ref − ℓ: 'k3' exp(d) − d − 1; 'k1' −d = ℓ − ℓ^ref; 'mse' d²/2."""
    token_weights: str = "threshold"
    """How ω± come from the TRM's q_t = σ(prefix-mean logit): 'threshold', 'topk', or 'none' (ω± = 1, no TRM);
    'oracle': from the task oracle's first error instead of the TRM (ω+ = 1; ω− = 1 from the error on)."""
    positive_threshold: float = 0.5
    """Threshold th+ in ω+ = clamp((q − th+)/(1 − th+), 0, 1); 0.5 gives Eq. 10's clamp(2q − 1, 0, 1)."""
    negative_threshold: float = 0.5
    """Threshold th− in ω− = clamp(((1 − q) − th−)/(1 − th−), 0, 1); 0.5 gives clamp(1 − 2q, 0, 1)."""
    positive_topk_ratio: float = 0.25
    """topk mode: fraction of a positive response's tokens kept (by q), min-max scaled to [0, 1]."""
    negative_topk_ratio: float = 0.25
    """topk mode: fraction of a negative response's tokens kept (by 1 − q), min-max scaled to [0, 1]."""
    actor_freeze_steps: int = 10
    """Steps at the start during which only the TRM trains (its head starts at zero, so ω± = 0)."""
    trm_input: str = "hidden"
    """What the TRM's logit s_t sees: 'hidden' (the paper: w·h_t, the trunk's state that predicts y_t);
    'hidden+reference_logprob' (not in the paper): w·h_t + a·f_t, f_t the lowest log-prob the frozen
    reference gave any response token before y_t, a a learned scalar starting at 1."""

    REMOVED_KEYS: ClassVar[dict[str, str]] = dict.fromkeys(
        ("ppo_clip", "clip_low", "clip_high"),
        "the trainer makes one optimiser pass per rollout batch (as the reference code does), "
        "so there is no ratio to clip")

    def __post_init__(self):
        _choice("mode", self.mode, MODES)
        _choice("advantage_type", self.advantage_type, ADVANTAGE_TYPES)
        _choice("kl_type", self.kl_type, KL_TYPES)
        _choice("token_weights", self.token_weights, TOKEN_WEIGHT_TYPES)
        _choice("policy_normalizer", self.policy_normalizer, POLICY_NORMALIZERS)
        _choice("trm_input", self.trm_input, TRM_INPUTS)
        for key in ("reward_correct", "reward_wrong", "positive_loss_factor", "negative_loss_factor", "kl_coef"):
            _finite(key, getattr(self, key))
        if not self.reward_correct > self.reward_wrong:
            raise UserError(f"objective: reward_correct ({self.reward_correct}) must exceed "
                            f"reward_wrong ({self.reward_wrong})")
        for key in ("positive_loss_factor", "negative_loss_factor", "kl_coef"):
            if getattr(self, key) < 0:
                raise UserError(f"objective: {key} = {getattr(self, key)} must be >= 0")
        for key in ("positive_threshold", "negative_threshold"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise UserError(f"objective: {key} = {getattr(self, key)} must be in [0, 1)")
        for key in ("positive_topk_ratio", "negative_topk_ratio"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise UserError(f"objective: {key} = {getattr(self, key)} must be in (0, 1]")
        if self.keep_pairs and not self.filter_trajectory:
            raise UserError("objective: keep_pairs = true needs filter_trajectory = true")
        if self.actor_freeze_steps < 0:
            raise UserError(f"objective: actor_freeze_steps = {self.actor_freeze_steps} must be >= 0")
        _check_buckets(self.difficulty_buckets)

    @classmethod
    def paper(cls, **overrides) -> "ObjectiveConfig":
        """The paper's objective: {0,1} rewards, plain BC on positives, (1−p)-reshaped negatives."""
        return cls(**{"mode": "paper", "reward_correct": 1.0, "reward_wrong": 0.0, **overrides})

    @property
    def positive_times_advantage(self) -> bool:
        """Whether the positive term is multiplied by A+ (pos_mult_adv, resolved against the mode)."""
        return self.mode == "code" if self.pos_mult_adv is None else self.pos_mult_adv

    def actor_is_frozen(self, step: int) -> bool:
        """True while only the TRM trains (0-based step < actor_freeze_steps)."""
        return step < self.actor_freeze_steps


def _choice(key, value, allowed):
    if value not in allowed:
        raise UserError(f"objective: {key} = {value!r} is not one of {', '.join(allowed)}")


def _finite(key, value):
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"objective: {key} = {value!r} must be a finite number")


def _check_buckets(buckets):
    for i, bucket in enumerate(buckets):
        if len(bucket) != 3:
            raise UserError(f"objective: difficulty_buckets[{i}] = {bucket!r} must be (low, high, repeat)")
        low, high, repeat = bucket
        if not (low < high) or not isinstance(repeat, int) or repeat < 0:
            raise UserError(f"objective: difficulty_buckets[{i}] = {bucket!r} needs low < high and an int repeat >= 0")
        if i and low < buckets[i - 1][1]:
            raise UserError(f"objective: difficulty_buckets[{i}] = {bucket!r} overlaps the previous bucket")
