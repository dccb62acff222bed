"""How the two domains pass through batch norm decides DANN on MNIST -> MNIST-M: a plain PyTorch loop, three ways.

- ``joint``: one concatenated source + target batch through the whole network.
- ``features``: each domain alone through the features, one joint batch through the domain classifier.
- ``per_domain``: each domain alone through the whole network (``DANN(batch_norm_stats="per_domain")``).

Same network (the paper's digit nets with batch norm), SGD momentum 0.9, lr 0.01 with the paper's annealing and
lambda ramp over ``--epochs``; prints MNIST-M test accuracy after every epoch. Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dann_batch_norm_passes.py {joint,features,per_domain} [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from scarce.data.datasets import MNIST, MNISTM
from scarce.nets.adversarial import adversarial_pass
from scarce.nets.dann import dann_digits
from scarce.schedules import dann_lambda, dann_lr_factor, progress

BATCH = 64


def _images(dataset) -> torch.Tensor:
    data = dataset.data
    return (data.unsqueeze(1).expand(-1, 3, -1, -1) if data.ndim == 3 else data.permute(0, 3, 1, 2)).float().div(255)


def _logits(net, x_s: torch.Tensor, x_t: torch.Tensor, coeff: float, mode: str):
    if mode == "features":  # the in-between way, measured here only
        feats_s, feats_t = net.features(x_s), net.features(x_t)
        return net.classifier(feats_s), net.domain_logits(torch.cat([feats_s, feats_t]), coeff)
    logits, domain_logits, _ = adversarial_pass(net.domain_forward, net.domain_classifier, x_s, x_t, coeff,
                                                per_domain=mode == "per_domain")
    return logits, domain_logits


@torch.no_grad()
def _accuracy(net, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    correct = sum(int((net(images[i:i + 1000])[0].argmax(1) == labels[i:i + 1000]).sum())
                  for i in range(0, len(images), 1000))
    net.train()
    return correct / len(images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["joint", "features", "per_domain"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    source, target = MNIST(None, split="train"), MNISTM(None, split="train")
    x_src, y_src, x_tgt = _images(source), source.targets, _images(target)
    test = MNISTM(None, split="test")
    x_test, y_test = _images(test), test.targets
    net = dann_digits()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    steps = len(x_src) // BATCH
    total, step, start = steps * args.epochs, 0, time.perf_counter()
    domain_labels = torch.cat([torch.zeros(BATCH, dtype=torch.long), torch.ones(BATCH, dtype=torch.long)])
    for epoch in range(args.epochs):
        order_s, order_t = torch.randperm(len(x_src)), torch.randperm(len(x_tgt))
        for i in range(steps):
            p = progress(step, total)
            for group in opt.param_groups:
                group["lr"] = 0.01 * dann_lr_factor(p)
            idx_s, idx_t = order_s[i * BATCH:(i + 1) * BATCH], order_t[i * BATCH:(i + 1) * BATCH]
            logits, domain_logits = _logits(net, x_src[idx_s], x_tgt[idx_t], dann_lambda(p), args.mode)
            loss = F.cross_entropy(logits, y_src[idx_s]) + F.cross_entropy(domain_logits, domain_labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        print(f"{args.mode} epoch {epoch + 1}: MNIST-M test accuracy {_accuracy(net, x_test, y_test):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
