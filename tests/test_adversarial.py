"""The adversarial core (scarce.nets.adversarial, scarce.lightning_modules.adversarial) on its own, and the import
rules of the files it spans."""

import ast
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from scarce.nets.adversarial import adversarial_pass, domain_labels, probe_pass

SRC = Path(__file__).resolve().parents[1] / "src" / "scarce"


class _Net(nn.Module):
    """Features with batch norm, a classifier with batch norm, and a domain head: the digits layout in small."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.classifier = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))
        self.head = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def forward_domain(self, x, n):
        feats = self.features(x)
        return (self.classifier(feats[:n]) if n else None), feats


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, generator=g), torch.randn(3, 3, generator=g) + 4


@pytest.mark.parametrize("per_domain", [False, True])
def test_pass_shapes_labels_and_classifier_statistics(per_domain):
    torch.manual_seed(0)
    net = _Net().train()
    reference = copy.deepcopy(net)
    x_s, x_t = _inputs()
    logits, domain_logits, labels = adversarial_pass(net.forward_domain, net.head, x_s, x_t, 0.5,
                                                     per_domain=per_domain)
    assert logits.shape == (5, 2) and domain_logits.shape == (8, 2)
    assert labels.tolist() == [0] * 5 + [1] * 3
    # The classifier (and its batch norm) saw the source rows only.
    reference.classifier(reference.features(x_s if per_domain else torch.cat([x_s, x_t]))[:5])
    torch.testing.assert_close(net.classifier[1].running_mean, reference.classifier[1].running_mean)
    torch.testing.assert_close(net.classifier[1].running_var, reference.classifier[1].running_var)


def test_reversed_domains_target_detaches_the_source_domain_input():
    net = _Net().eval()
    x_s, x_t = (x.requires_grad_() for x in _inputs())
    _, domain_logits, labels = adversarial_pass(net.forward_domain, net.head, x_s, x_t, 1.0,
                                                reversed_domains="target")
    torch.nn.functional.cross_entropy(domain_logits, labels).backward()
    assert (x_s.grad is None or not x_s.grad.any()) and x_t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reversed_domains"):
        adversarial_pass(net.forward_domain, net.head, x_s, x_t, 1.0, reversed_domains="source")


def test_probe_restores_each_modules_mode_and_keeps_target_out_of_the_statistics():
    net = _Net().train()
    net.features[1].eval()  # a frozen batch norm stays frozen
    before = net.features[1].running_mean.clone()
    x_s, x_t = _inputs()
    out = probe_pass(net.forward_domain, net, net.head, x_s, x_t)
    assert [m.training for m in net.modules()] == [True, True, True, False, True, True, True, True, True, True, True]
    assert torch.equal(net.features[1].running_mean, before)
    assert out.domain_labels.tolist() == [0] * 5 + [1] * 3
    (out.logits.sum() + out.domain_logits.sum()).backward()
    # The head is a probe: no domain gradient reaches the features through the target (no grad) or the source
    # (detached); the features' gradient is the classifier's alone.
    grad = net.features[0].weight.grad.clone()
    net.zero_grad()
    net.forward_domain(x_s, 5)[0].sum().backward()
    torch.testing.assert_close(grad, net.features[0].weight.grad)


@pytest.mark.parametrize("per_domain", [False, True])
def test_target_logits_follow_the_source_rows_with_gradient(per_domain):
    """with_target_logits (for losses on the target, e.g. MinEnt): the task logits of the target rows come after the
    source's, in both passes; in the probe they carry the target's gradient while the head still sees detached
    inputs."""
    net = _Net().eval()
    x_s, x_t = _inputs()
    out = adversarial_pass(net.forward_domain, net.head, x_s, x_t, 1.0, per_domain=per_domain, with_target_logits=True)
    assert out.logits.shape == (8, 2) and out.domain_logits.shape == (8, 2)
    torch.testing.assert_close(out.logits[5:], net.forward_domain(x_t, 3)[0])
    x_t.requires_grad_()
    probe = probe_pass(net.forward_domain, net, net.head, x_s, x_t, with_target_logits=True)
    assert probe.logits.shape == (8, 2)
    probe.domain_logits.sum().backward(retain_graph=True)
    assert x_t.grad is None and net.features[0].weight.grad is None  # the head is still a probe
    probe.logits[5:].sum().backward()
    assert x_t.grad.abs().sum() > 0


def test_per_pixel_domain_labels():
    labels = domain_labels(torch.zeros(4, 2, 3, 5), 1)
    assert labels.shape == (4, 3, 5) and labels[0].eq(0).all() and labels[1:].eq(1).all()


def _scarce_imports(path: Path) -> set[str]:
    imports = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.add(node.module)
        elif isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
    return {name for name in imports if name == "scarce" or name.startswith("scarce.")}


@pytest.mark.parametrize("name", ["adversarial", "dann", "domain_heads", "grl", "dann_digits", "blob_mlp"])
def test_adversarial_nets_import_only_nets(name):
    assert all(m.startswith("scarce.nets.") for m in _scarce_imports(SRC / "nets" / f"{name}.py"))


def test_lightning_modules_import_no_datamodule():
    for path in (SRC / "lightning_modules").glob("*.py"):
        bad = {m for m in _scarce_imports(path) if m.startswith("scarce.datamodules")}
        assert not bad, f"{path.name} imports {bad}"
