"""A data-parallel rank with no sequence in a step (fewer kept rollouts than ranks) runs an all-padding
micro-batch through every pass, so that it takes part in every collective, and adds exactly nothing to
the losses, gradients and summed statistics (in-process, one gloo rank; the DP = 2 run where one rank
gets no sequence is in test_oreal_invariance.py)."""
import math

import pytest
import torch
from megatron.core import parallel_state as ps

from oreal_mega.models.hf_config import parse_arch
from oreal_mega.models.pipeline import forward_backward
from oreal_mega.objective import GlobalCounts, ObjectiveConfig
from oreal_mega.testing.layouts import TINY_CONFIGS
from oreal_mega.trainer.batch import IGNORE, Trajectory, micro_batches
from oreal_mega.trainer.metrics import sum_metric
from oreal_mega.trainer.passes import actor_step, sequence_logprobs, token_rm_step

LENGTH = 24
# the per-micro-batch statistics that the Learner sums over micro-batches and ranks
RM_SUMS = ["loss", "correct", "sequences", "error_auc_sum", "error_responses"]
ACTOR_SUMS = ["loss", "kl_sum", "entropy_sum", "tokens", "rollout_gap_sum", "rollout_gap_max", "rollout_k3_sum"]


def _trajectories(with_rollout_logprobs: bool = True) -> list[Trajectory]:
    gen = torch.Generator().manual_seed(4)
    out = []
    for i, (prompt, response) in enumerate([(5, 6), (4, 7)]):
        ids = torch.randint(3, 250, (prompt + response,), generator=gen).tolist()
        logprobs = (-torch.rand(response, generator=gen)).tolist() if with_rollout_logprobs else None
        out.append(Trajectory(ids[:prompt], ids[prompt:], is_positive=i == 0, advantage=0.8 - 1.6 * i,
                              pass_rate=0.5, rollout_logprobs=logprobs, prompt=0, first_error=-1 if i == 0 else 2))
    return out


@pytest.mark.parametrize("with_rollout_logprobs", [True, False])
def test_an_empty_plan_entry_is_an_all_padding_micro_batch(with_rollout_logprobs):
    trajs = _trajectories(with_rollout_logprobs)
    [empty] = micro_batches(trajs, [[]], LENGTH)
    [real] = micro_batches(trajs, [[0, 1]], LENGTH)
    assert empty.num_real_tokens == 0 and empty.num_labelled == 0 and empty.seq_lengths == [LENGTH]
    assert torch.equal(empty.input_ids, torch.zeros(LENGTH, dtype=torch.long))
    assert torch.equal(empty.position_ids, torch.arange(LENGTH))
    assert torch.equal(empty.fields["labels"], torch.full((LENGTH,), IGNORE))
    assert empty.fields.keys() == real.fields.keys() == ({"labels", "rollout_logp"} if with_rollout_logprobs
                                                        else {"labels"})
    for name, values in real.fields.items():
        assert empty.fields[name].dtype == values.dtype and empty.fields[name].shape == values.shape
    if with_rollout_logprobs:
        assert torch.equal(empty.fields["rollout_logp"], torch.zeros(LENGTH))
    assert empty.sequence_fields.keys() == real.sequence_fields.keys()
    for name, values in real.sequence_fields.items():
        assert empty.sequence_fields[name].dtype == values.dtype and empty.sequence_fields[name].shape == (0,)


def test_rollout_logprobs_are_a_field_of_every_micro_batch_or_of_none():
    """One trajectory of the step without the engine's log-probs drops the field everywhere, so every
    micro-batch on every rank reports the same statistics."""
    trajs = _trajectories()
    trajs[1].rollout_logprobs = None
    assert all("rollout_logp" not in mb.fields for mb in micro_batches(trajs, [[0], [1], []], LENGTH))


def _models(arch_name: str):
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp
    from oreal_mega.trainer.token_rm import to_token_rm

    torch.manual_seed(2)
    arch = parse_arch(TINY_CONFIGS[arch_name])
    policy, reference, rm = build_model(arch), build_model(arch), build_model(arch)
    to_token_rm(rm, reference_feature=True)
    with torch.no_grad():  # a head that is not zero: with the zero-initialised one every ω would be 0
        rm[0].value_head.weight.normal_(0.0, 0.5)
    return wrap_ddp(policy), reference, wrap_ddp(rm)


def _oreal_step(models, mbs, cfg: ObjectiveConfig):
    """The three passes of Learner.learn; returns their metrics and the gradients (main_grad)."""
    from oreal_mega.models.ddp import finalize_grads, zero_grads

    policy, reference, rm = models
    counts = GlobalCounts(positive_tokens=6, negative_tokens=7, sequences=2)  # the step's, over all ranks
    tp_group = ps.get_tensor_model_parallel_group()
    zero_grads(policy)
    zero_grads(rm)
    ref_logps = sequence_logprobs(reference, mbs, tp_group)
    rm_out = token_rm_step(rm, mbs, ref_logps, counts, cfg)
    actor_out = actor_step(policy, mbs, ref_logps, [m["weights"] for m in rm_out], counts, cfg, tp_group)
    finalize_grads(policy)
    finalize_grads(rm)
    grads = {f"{model}.{name}": p.main_grad.clone()
             for model, chunks in (("policy", policy), ("rm", rm)) for name, p in chunks[0].module.named_parameters()}
    return ref_logps, rm_out, actor_out, grads


@pytest.mark.parametrize("arch_name", ["qwen2", "qwen2-tied"])
@pytest.mark.parametrize("token_weights", ["threshold", "topk", "oracle"])
def test_an_all_padding_micro_batch_runs_every_pass_and_adds_nothing(megatron_world, arch_name, token_weights):
    models = _models(arch_name)
    cfg = ObjectiveConfig(trm_input="hidden+reference_logprob", token_weights=token_weights)
    trajs = _trajectories()

    # the rank's only micro-batch: zero loss, zero gradients, statistics that sum (or max) to nothing
    [ref_logp], [rm_out], [actor_out], grads = _oreal_step(models, micro_batches(trajs, [[]], LENGTH), cfg)
    assert torch.equal(ref_logp, torch.zeros(LENGTH))
    for name, grad in grads.items():
        assert torch.count_nonzero(grad) == 0, name
    assert torch.equal(rm_out["weights"], torch.zeros(LENGTH))
    assert rm_out["sequence_logit"].shape == rm_out["index"].shape == (0,)
    for metrics, keys in ((rm_out, RM_SUMS), (actor_out, ACTOR_SUMS)):
        for key in keys:
            assert float(metrics[key]) == 0.0, key
    assert sum_metric([actor_out], "rollout_gap_max", reduce="max") == 0.0

    # next to a real micro-batch: bit-identical gradients and statistics to the real one alone
    alone = _oreal_step(models, micro_batches(trajs, [[0, 1]], LENGTH), cfg)
    padded = _oreal_step(models, micro_batches(trajs, [[0, 1], []], LENGTH), cfg)
    for name, grad in alone[3].items():
        assert torch.equal(padded[3][name], grad), name
    assert sum(float(g.abs().sum()) for g in alone[3].values()) > 0
    for out, keys in ((1, RM_SUMS), (2, ACTOR_SUMS)):
        for key in keys:
            assert math.isfinite(sum_metric(alone[out], key)), key
            assert sum_metric(padded[out], key) == sum_metric(alone[out], key), key
    assert (sum_metric(padded[2], "rollout_gap_max", reduce="max")
            == sum_metric(alone[2], "rollout_gap_max", reduce="max") > 0)


def test_sft_loss_of_an_all_padding_micro_batch_is_zero(megatron_world):
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import finalize_grads, wrap_ddp, zero_grads
    from oreal_mega.trainer.sft import sft_loss

    policy = wrap_ddp(build_model(parse_arch(TINY_CONFIGS["qwen2"])))
    trajs = _trajectories()
    for plan, nonzero in (([[]], False), ([[0, 1]], True)):
        zero_grads(policy)
        out = forward_backward(policy, micro_batches(trajs, plan, LENGTH),
                               sft_loss(13, ps.get_tensor_model_parallel_group()))
        finalize_grads(policy)
        grads = [p.main_grad for p in policy[0].module.parameters()]
        assert (sum(float(g.abs().sum()) for g in grads) > 0) == nonzero
        assert (sum_metric(out, "loss") > 0) == nonzero
        assert math.isfinite(sum_metric(out, "loss")) and sum_metric(out, "correct_tokens") >= 0
