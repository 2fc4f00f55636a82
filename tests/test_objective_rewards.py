"""Objective config, rewards from verdicts, and advantages against hand computations."""
import math

import pytest
import torch

from oreal_mega.errors import UserError
from oreal_mega.objective import ObjectiveConfig, advantages, rewards_from_verdicts


def test_config_defaults_are_the_reference_code():
    cfg = ObjectiveConfig()
    assert (cfg.mode, cfg.advantage_type, cfg.kl_type, cfg.token_weights) == ("code", "rloo", "k3", "threshold")
    assert (cfg.reward_correct, cfg.reward_wrong) == (1.0, -1.0)
    assert (cfg.positive_loss_factor, cfg.negative_loss_factor, cfg.kl_coef) == (1.0, 0.5, 0.01)
    assert cfg.positive_times_advantage and cfg.filter_trajectory and cfg.keep_pairs
    assert cfg.actor_is_frozen(9) and not cfg.actor_is_frozen(10)
    paper = ObjectiveConfig.paper()
    assert paper.mode == "paper" and paper.reward_wrong == 0.0 and not paper.positive_times_advantage
    assert ObjectiveConfig.paper(pos_mult_adv=True).positive_times_advantage


@pytest.mark.parametrize("key, value", [
    ("mode", "both"), ("kl_type", "k2"), ("advantage_type", "ppo"), ("token_weights", "soft"),
    ("positive_threshold", 1.0), ("negative_topk_ratio", 0.0), ("kl_coef", -0.1), ("reward_wrong", 1.0),
    ("kl_coef", float("nan")), ("difficulty_buckets", ((0.0, 0.5, 2), (0.4, 0.8, 1))),
])
def test_config_rejects_bad_values_naming_the_key(key, value):
    with pytest.raises(UserError, match=key):
        ObjectiveConfig(**{key: value})


def test_config_from_yaml_names_unknown_key_and_source(tmp_path):
    from oreal_mega.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("kl_coeff: 0.1\n")
    with pytest.raises(UserError, match=r"run\.yaml.*'kl_coeff'"):
        load_config(ObjectiveConfig, path)
    path.write_text("kl_type: mse\ndifficulty_buckets: [[0.0, 1.0, 1]]\n")
    cfg = load_config(ObjectiveConfig, path)
    assert cfg.kl_type == "mse" and cfg.difficulty_buckets == ((0.0, 1.0, 1),)
    path.write_text("filter_trajectory: false\n")
    with pytest.raises(UserError, match="keep_pairs"):
        load_config(ObjectiveConfig, path)


def test_rewards_from_verdicts_code_and_paper_values_and_counts():
    verdicts = ["correct", "wrong", "truncated", "error", "correct", "timeout", "no_answer", "wrong"]
    code = rewards_from_verdicts(verdicts, 4, ObjectiveConfig())
    assert code.rewards.tolist() == [[1, -1, -1, -1], [1, -1, -1, -1]]
    assert code.rewards.dtype == torch.float32
    assert code.pass_rate.tolist() == [0.25, 0.25]
    assert code.verdict_counts == {"correct": 2, "wrong": 2, "no_answer": 1, "truncated": 1, "timeout": 1, "error": 1}
    paper = rewards_from_verdicts(verdicts, 4, ObjectiveConfig.paper())
    assert paper.rewards.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0]]


def test_rewards_reject_unknown_verdict_and_ragged_groups():
    with pytest.raises(ValueError, match=r"verdict\[1\] = 'maybe'"):
        rewards_from_verdicts(["correct", "maybe"], 2, ObjectiveConfig())
    with pytest.raises(ValueError, match="multiple of K = 4"):
        rewards_from_verdicts(["correct"] * 6, 4, ObjectiveConfig())


def test_rloo_hand_case_k4():
    # c = 1 of K = 4 with ±1 rewards: A+ = 1 − (−1−1−1)/3 = 2, A− = −1 − (1−1−1)/3 = −2/3
    a = advantages(torch.tensor([[1.0, -1.0, -1.0, -1.0]]), "rloo")
    assert torch.allclose(a, torch.tensor([[2.0, -2 / 3, -2 / 3, -2 / 3]]), rtol=1e-6)
    # with 0/1 rewards every value halves
    a01 = advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), "rloo")
    assert torch.allclose(a01, torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3]]), rtol=1e-6)


def test_rloo_matches_closed_form_for_every_c_k16():
    k = 16
    rewards = torch.tensor([[1.0] * c + [-1.0] * (k - c) for c in range(k + 1)])
    a = advantages(rewards, "rloo")
    for c in range(k + 1):
        p = c / k
        if c > 0:
            assert a[c, 0].item() == pytest.approx(32 / 15 * (1 - p), rel=1e-6, abs=1e-7)
        if c < k:
            assert a[c, -1].item() == pytest.approx(-32 / 15 * p, rel=1e-6, abs=1e-7)


def test_grpo_hand_case_and_constant_group():
    # mean −0.5, Bessel std sqrt((1.5² + 3·0.5²)/3) = 1
    a = advantages(torch.tensor([[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]]), "grpo")
    expected = torch.tensor([[1.5, -0.5, -0.5, -0.5], [0.0, 0.0, 0.0, 0.0]]) / (1 + 1e-8)
    assert torch.allclose(a, expected, rtol=1e-6, atol=0)
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0]])
    mean = 2 / 5
    std = math.sqrt((2 * 0.6**2 + 3 * 0.4**2) / 4)
    assert a.dtype == torch.float32
    assert torch.allclose(advantages(rewards, "grpo"), (rewards - mean) / (std + 1e-8), rtol=1e-6)


def test_reinforce_is_the_raw_reward_and_k1_rejected_for_baselines():
    rewards = torch.tensor([[1.0, -1.0, -1.0]])
    assert torch.equal(advantages(rewards, "reinforce"), rewards)
    with pytest.raises(ValueError, match="K >= 2"):
        advantages(torch.tensor([[1.0]]), "rloo")
