"""Lightning must not make DANN slower: steps per second of a plain PyTorch DANN loop vs scarce's DANN module.

Both run the same network, batch (64 MNIST + 64 MNIST-M), optimizer, schedules and data loading, for the same
number of steps, alternately, in one process. Usage:

    .venv/bin/python benchmarks/dann_lightning_overhead.py [--steps 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import lightning as L
import torch
import torch.nn.functional as F

from scarce.datamodules.domain_adaptation import DigitsDataModule
from scarce.lightning_modules.dann import DANN
from scarce.nets.adversarial import adversarial_pass
from scarce.schedules import dann_lambda, dann_lr_factor, progress


def plain_loop(dm: DigitsDataModule, steps: int) -> float:
    torch.manual_seed(0)
    model = DANN(network="digits")  # only its plain nn.Module is used here
    net = model.net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: dann_lr_factor(progress(s, steps)))
    loader = itertools.cycle(dm.train_dataloader())
    start = time.perf_counter()
    for step in range(steps):
        batch, _, _ = next(loader)
        x_s, y_s, x_t = batch["source"]["image"], batch["source"]["label"], batch["target"]["image"]
        # Each domain through the network alone, as DANN(batch_norm_stats="per_domain") does.
        logits, dom, dom_y = adversarial_pass(net.domain_forward, net.domain_classifier, x_s, x_t,
                                              dann_lambda(progress(step, steps)), per_domain=True)
        loss = F.cross_entropy(logits, y_s) + F.cross_entropy(dom, dom_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return steps / (time.perf_counter() - start)


def lightning_fit(dm: DigitsDataModule, steps: int) -> float:
    torch.manual_seed(0)
    model = DANN(network="digits")
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    dm = DigitsDataModule(batch_size=64)
    dm.prepare_data()
    dm.setup("fit")
    rows = []
    for _ in range(args.repeats):
        rows.append((plain_loop(dm, args.steps), lightning_fit(dm, args.steps)))
    plain = max(r[0] for r in rows)
    light = max(r[1] for r in rows)
    print(f"\nDANN digits, batch 64+64, {args.steps} steps, best of {args.repeats}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop (anchor): {plain:.2f} steps/s")
    print(f"scarce DANN + Lightning:     {light:.2f} steps/s  ({light / plain:.3f} x the plain loop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
