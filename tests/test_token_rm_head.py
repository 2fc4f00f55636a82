"""The token-RM's value head: the paper's zero-initialised w·h_t, and the reference feature's a·f_t."""
import torch

from oreal_mega.trainer.token_rm import ValueHead


def test_paper_head_is_zero_and_has_no_reference_weight():
    head = ValueHead(8, torch.float32, torch.device("cpu"), reference_feature=False)
    assert head.reference_weight is None and [n for n, _ in head.named_parameters()] == ["weight"]
    assert torch.equal(head(torch.randn(5, 8)), torch.zeros(5))


def test_reference_head_adds_its_weight_times_the_feature_and_learns_it():
    head = ValueHead(8, torch.float32, torch.device("cpu"), reference_feature=True)
    hidden, feature = torch.randn(5, 8), torch.tensor([0.0, -1.0, -1.0, -3.0, -3.0])
    assert torch.equal(head(hidden, feature), feature)  # a starts at 1, w at 0
    head.weight.data.fill_(0.5)
    head.reference_weight.data.fill_(2.0)
    logits = head(hidden, feature)
    assert torch.allclose(logits, hidden.sum(1) * 0.5 + 2.0 * feature)
    logits.sum().backward()
    assert torch.allclose(head.reference_weight.grad, feature.sum().reshape(1))
