import pytest
import torch
from torch import nn

from scarce.nets.grl import GradientReversal, GradientReversalFunction, grad_reverse
from scarce.schedules import adversarial_coeff, dann_lambda, dann_lr_factor, progress


def test_gradcheck_float64():
    # gradcheck compares the backward pass with finite differences of the forward pass. The forward pass is
    # the identity, so the two agree exactly when the reversal is undone: coeff = -1, here inside a
    # non-linear function so that the check sees a non-trivial Jacobian through the Function.
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.tanh(GradientReversalFunction.apply(t * t, -1.0)), (x,))


@pytest.mark.parametrize("coeff", [0.0, 0.25, 1.0, 3.0])
def test_jacobian_is_minus_coeff_times_identity_float64(coeff):
    x = torch.randn(6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: GradientReversalFunction.apply(t, coeff), x)
    assert jac.dtype == torch.float64
    assert torch.equal(jac, -coeff * torch.eye(6, dtype=torch.float64))


def test_forward_is_identity_backward_is_negated_and_scaled():
    x = torch.randn(3, 2, requires_grad=True)
    y = grad_reverse(x, 2.5)
    assert torch.equal(y, x)
    upstream = torch.randn(3, 2)
    y.backward(upstream)
    assert torch.allclose(x.grad, -2.5 * upstream)


def test_domain_loss_pushes_features_opposite_to_plain_classifier():
    torch.manual_seed(0)
    features = nn.Linear(4, 8)
    head = nn.Linear(8, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def feature_grad(module_between: nn.Module) -> torch.Tensor:
        features.zero_grad()
        nn.functional.cross_entropy(head(module_between(features(x))), y).backward()
        return features.weight.grad.clone()

    plain = feature_grad(nn.Identity())
    reversed_ = feature_grad(GradientReversal(coeff=0.3))
    assert torch.allclose(reversed_, -0.3 * plain, atol=1e-7)
    # A step along the reversed gradient increases the domain loss the plain step would decrease.
    assert (reversed_ * plain).sum() < 0


def test_reversed_gradient_under_bf16_autocast_is_float32():
    features = nn.Linear(4, 4)
    x = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = grad_reverse(features(x), 1.0).float().sum()
    out.backward()
    assert features.weight.grad.dtype == torch.float32
    # Same computation without reversal: the gradient must be the exact negation.
    reversed_grad = features.weight.grad.clone()
    features.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = features(x).float().sum()
    out.backward()
    assert torch.equal(reversed_grad, -features.weight.grad)


def test_module_coeff_is_mutable_and_shown():
    grl = GradientReversal(0.1)
    grl.coeff = 0.9
    x = torch.ones(2, requires_grad=True)
    grl(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((2,), -0.9))
    assert "coeff=0.9" in repr(grl)


@pytest.mark.parametrize("p, expected", [(0.0, 0.0), (1.0, 2 / (1 + torch.e ** -10) - 1)])
def test_lambda_schedule_ends(p, expected):
    assert dann_lambda(p) == pytest.approx(expected)


def test_lambda_schedule_is_increasing_and_lr_decreasing():
    ps = [i / 20 for i in range(21)]
    lambdas = [dann_lambda(p) for p in ps]
    lrs = [dann_lr_factor(p) for p in ps]
    assert all(a < b for a, b in zip(lambdas, lambdas[1:]))
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert dann_lr_factor(1.0) == pytest.approx(1 / 11**0.75)
    assert progress(5, 0) == 1.0 and progress(-1, 10) == 0.0 and progress(3, 12) == 0.25


def test_adversarial_coeff_is_weight_times_ramp_or_constant():
    assert adversarial_coeff(5, 10, 0.5) == pytest.approx(0.5 * dann_lambda(0.5))
    assert adversarial_coeff(5, 10, 0.5, schedule="constant") == 0.5
    assert adversarial_coeff(0, 10, 3.0) == 0.0
    assert adversarial_coeff(7, 10, 0.0) == 0.0
