"""oreal_mega.kernels, PyTorch implementation (the CPU path) and the front door, against float64."""
import math

import pytest
import torch

from oreal_mega.kernels import fused_oreal_loss, token_logprobs
from oreal_mega.kernels.kl import kl_grad, kl_value
from oreal_mega.kernels.reference import naive_token_logprobs
from test_kernels_helpers import check_fused_loss, check_token_logprobs, make_inputs, rel_err


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_logprobs_torch_matches_float64(dtype, temperature, seed):
    check_token_logprobs("torch", dtype, temperature, seed=seed)


@pytest.mark.parametrize("kl_type", ["k3", "k1", "mse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_loss_torch_matches_autograd_float64(kl_type, dtype, seed):
    check_fused_loss("torch", dtype, kl_type, seed=seed)


def test_naive_backend_through_the_front_door_matches_float64():
    check_token_logprobs("naive", torch.float32, 0.9, seed=41)
    check_fused_loss("naive", torch.float32, "mse", seed=42)


def test_automatic_backend_on_cpu_is_chunked_torch_and_chunking_does_not_change_results():
    hidden, weight, labels = make_inputs(70, 16, 129, torch.float32, seed=5)
    whole = token_logprobs(hidden, weight, labels, chunk_tokens=1000)
    for chunk in (1, 16, 33):
        assert torch.allclose(token_logprobs(hidden, weight, labels, chunk_tokens=chunk), whole, atol=1e-6)
    reference, _ = naive_token_logprobs(hidden.double(), weight.double(), labels, dtype=torch.float64)
    assert rel_err(whole, reference) <= 1e-5


def test_all_tokens_ignored_gives_zeros_and_zero_gradients():
    hidden, weight, _ = make_inputs(6, 8, 20, torch.float32, seed=1)
    labels = torch.full((6,), -1, dtype=torch.long)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, diag = fused_oreal_loss(h, w, labels, coef_logp=1.0, ref_logp=torch.zeros(6), kl_coef=0.1,
                                  ignore_index=-1)
    loss.backward()
    assert loss.item() == 0 and (diag.logp == 0).all() and (h.grad == 0).all() and (w.grad == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_gradient_goes_into_the_callers_fp32_buffer(dtype):
    hidden, weight, labels = make_inputs(40, 16, 97, dtype, seed=11)
    coefs = dict(coef_logp=torch.linspace(-1, 1, 40), ref_logp=torch.full((40,), -3.0), kl_coef=0.2)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, _ = fused_oreal_loss(h, w, labels, chunk_tokens=16, **coefs)
    loss.backward()
    # megatron's main_grad: fp32, already holding an earlier micro-batch's gradient
    earlier = torch.randn(weight.shape, dtype=torch.float32, generator=torch.Generator().manual_seed(3))
    into = earlier.clone()
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss2, _ = fused_oreal_loss(h2, w2, labels, chunk_tokens=16, weight_grad_into=into, **coefs)
    loss2.backward()
    assert w2.grad is None and torch.equal(loss2, loss) and torch.equal(h2.grad, h.grad)
    expected = earlier + w.grad.float()  # the returned gradient is rounded to the weight's dtype
    assert rel_err(into, expected) <= (1e-6 if dtype == torch.float32 else 1e-2)


def test_weight_grad_into_refuses_a_wrong_buffer_and_a_scaled_loss():
    hidden, weight, labels = make_inputs(8, 8, 20, torch.float32, seed=2)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()  # the loss reaches only h
    with pytest.raises(ValueError, match=r"weight_grad_into must be fp32 \(20, 8\)"):
        fused_oreal_loss(h, w, labels, coef_logp=1.0, weight_grad_into=torch.zeros(20, 8, dtype=torch.bfloat16))
    loss, _ = fused_oreal_loss(h, w, labels, coef_logp=1.0, weight_grad_into=torch.zeros(20, 8))
    with pytest.raises(RuntimeError, match="backpropagated with gradient 1"):
        (2 * loss).backward()


def test_kl_estimators_hand_values():
    logp = torch.tensor([-1.0])
    ref = logp + math.log(2.0)  # δ = ref − logp = ln 2, e^δ = 2
    assert kl_value(logp, ref, "k3").item() == pytest.approx(2 - math.log(2) - 1, rel=1e-6)
    assert kl_value(logp, ref, "k1").item() == pytest.approx(-math.log(2), rel=1e-6)
    assert kl_value(logp, ref, "mse").item() == pytest.approx(math.log(2) ** 2 / 2, rel=1e-6)
    assert kl_grad(logp, ref, "k3").item() == pytest.approx(-1.0, rel=1e-6)
    assert kl_grad(logp, ref, "k1").item() == 1.0
    assert kl_grad(logp, ref, "mse").item() == pytest.approx(-math.log(2), rel=1e-6)


def test_oreal_actor_loss_terms_a_b_c_expressed_with_coefficients():
    """ALGORITHM.md (One step, 4.) terms (a), (b), (c) written out directly vs the README's coefficient recipe."""
    hidden, weight, _ = make_inputs(10, 12, 50, torch.float32, seed=7, n_ignored=0)
    labels = torch.randint(0, 50, (10,), generator=torch.Generator().manual_seed(3))
    labels[[0, 5]] = -100                                    # prompt tokens of the two packed sequences
    positive = torch.tensor([0, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    negative = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.bool)
    omega = torch.rand(10, generator=torch.Generator().manual_seed(4))
    adv_pos, adv_neg, eta, beta = 32 / 15 * 0.25, -32 / 15 * 0.75, 0.5, 0.01
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    ref_logp = -torch.rand(10, generator=torch.Generator().manual_seed(6)) * 4

    h64, w64 = hidden.double().requires_grad_(), weight.double().requires_grad_()
    logp, _ = naive_token_logprobs(h64, w64, labels, dtype=torch.float64)
    ell, ref = logp, ref_logp.double()
    term_a = (adv_pos * omega[positive] * -ell[positive]).sum() / n_pos
    term_b = eta / n_neg * (-adv_neg * omega[negative] * torch.exp(ell[negative] - ell[negative].detach())).sum()
    delta = (ref - ell)[positive | negative]
    term_c = beta / (n_pos + n_neg) * (torch.exp(delta) - delta - 1).sum()
    expected = term_a + term_b + term_c
    expected.backward()

    coef_logp = torch.where(positive, -adv_pos * omega / n_pos, torch.zeros(10))
    coef_ratio = torch.where(negative, -eta * adv_neg * omega / n_neg, torch.zeros(10))
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, _ = fused_oreal_loss(h, w, labels, coef_logp=coef_logp, coef_ratio=coef_ratio, ref_logp=ref_logp,
                               kl_coef=beta / (n_pos + n_neg), kl_type="k3")
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert rel_err(h.grad, h64.grad) <= 1e-5 and rel_err(w.grad, w64.grad) <= 1e-5


def test_bad_inputs_raise_clear_errors():
    hidden, weight, labels = make_inputs(4, 8, 10, torch.float32, seed=2, n_ignored=0)
    with pytest.raises(ValueError, match="weight"):
        token_logprobs(hidden, weight[:, :5], labels)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        token_logprobs(hidden, weight, torch.tensor([0, 1, 10, 2]))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(hidden, weight, labels, temperature=0.0)
    with pytest.raises(ValueError, match="share a float dtype"):
        token_logprobs(hidden.bfloat16(), weight, labels)
    with pytest.raises(ValueError, match="kl_type='k2'"):
        fused_oreal_loss(hidden, weight, labels, kl_type="k2")
    with pytest.raises(ValueError, match="ref_logp is required"):
        fused_oreal_loss(hidden, weight, labels, kl_coef=0.1)
    with pytest.raises(ValueError, match="coef_logp requires grad"):
        fused_oreal_loss(hidden, weight, labels, coef_logp=torch.ones(4, requires_grad=True))
    with pytest.raises(ValueError, match=r"coef_ratio must be a number or a \[4\] tensor"):
        fused_oreal_loss(hidden, weight, labels, coef_ratio=torch.ones(3))


def test_bench_kernels_runs_on_cpu_and_prints_the_table(capsys):
    from oreal_mega.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "kernels", "--shape", "32,300", "--tokens", "64", "--repeats", "1"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "T=64 H=32 V=300" in out and "machine: CPU" in out
    rows = [line for line in out.splitlines() if line.startswith("| naive") or line.startswith("| ours")]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and cells[2].endswith("x")
        assert all(float(e) < 1e-5 for e in cells[4:7]), row  # fp32 accuracy vs float64


def test_bench_kernels_rejects_a_bad_shape(capsys):
    from oreal_mega.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "kernels", "--shape", "7b"])
    assert exit_info.value.code == 2
    assert "--shape '7b'" in capsys.readouterr().err


@pytest.mark.parametrize("ignored", [0, 9, 40])  # 40: no label at all (a rank's all-padding micro-batch)
def test_a_known_label_count_gives_the_same_results_without_counting_on_the_device(ignored, monkeypatch):
    hidden, weight, labels = make_inputs(40, 16, 97, torch.float32, seed=13, n_ignored=ignored)
    coefs = dict(coef_logp=torch.linspace(-1, 1, 40), ref_logp=torch.full((40,), -3.0), kl_coef=0.2)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, diag = fused_oreal_loss(h, w, labels, chunk_tokens=16, **coefs)
    loss.backward()
    logp = token_logprobs(hidden, weight, labels)

    def no_nonzero(*args, **kwargs):  # the counting (host-syncing) path must not run
        raise AssertionError("torch.nonzero called although the label count was given")

    monkeypatch.setattr(torch, "nonzero", no_nonzero)
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss2, diag2 = fused_oreal_loss(h2, w2, labels, chunk_tokens=16, num_labelled=40 - ignored, **coefs)
    loss2.backward()
    assert torch.equal(loss2, loss) and torch.equal(diag2.logp, diag.logp)
    assert torch.equal(h2.grad, h.grad) and torch.equal(w2.grad, w.grad)
    assert torch.equal(token_logprobs(hidden, weight, labels, num_labelled=40 - ignored), logp)


def test_a_wrong_label_count_is_refused_naming_it():
    hidden, weight, labels = make_inputs(8, 8, 20, torch.float32, seed=2)  # 3 of 8 labels ignored
    for backend in ("torch", "naive"):
        with pytest.raises(ValueError, match="num_labelled=4 does not match the labels: 5 tokens carry a label"):
            token_logprobs(hidden, weight, labels, num_labelled=4, backend=backend)
    with pytest.raises(ValueError, match="num_labelled=9 does not match the labels: there are 8 tokens"):
        fused_oreal_loss(hidden, weight, labels, coef_logp=1.0, num_labelled=9)
