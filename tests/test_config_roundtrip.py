"""Every experiment config fits, and the ``config.yaml`` its run saved fits again as it is.

A run's saved config is how a result is reproduced; it used to fail for the configs with SWA (its ``device``
default saved as "Unable to serialize instance cpu"). Each config fits one step on tiny data (the fixture layouts of
tests/_segmentation_data.py for Cityscapes and SYNTHIA, a few rendered scenes, a few hundred MNIST digits), then
``scarce fit --config runs/<name>/csv/version_0/config.yaml`` runs again with nothing added: the saved file alone
must carry the data roots, sizes and budgets, and every value in it must parse back.

All fits run in one child process (Lightning imported once; rendering creates a GL context, which must not live in
the pytest process that forks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _segmentation_data import make_cityscapes, make_synthia
from scarce.packaged_configs import CONFIG_ROOT

EXPERIMENTS = sorted(p.stem for p in CONFIG_ROOT.glob("*.yaml"))

# One step, one validation batch, quiet. Self-training starts from the last.ckpt its first-stage config writes, so
# the first stages run before it (the default init_checkpoint of each names that file).
TRAINER = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--trainer.log_every_n_steps", "1"]

FITS = r"""
import json, sys
from pathlib import Path
from scarce.cli import lightning_cli

saved = {}
for name, args in json.loads(sys.argv[1]):
    lightning_cli(["fit", "--config", name, *args])  # the packaged config, by name
    first = sorted(Path("runs", name).glob("csv/version_*/config.yaml"))
    lightning_cli(["fit", "--config", str(first[-1])])  # the saved config, nothing added
    saved[name] = [str(p) for p in sorted(Path("runs", name).glob("csv/version_*/config.yaml"))]
print("SAVED " + json.dumps(saved))
"""


def _tiny(name: str, roots: dict[str, Path]) -> list[str]:
    """The overrides that make config ``name`` a one-step fit on the tiny data under ``roots``."""
    config = yaml.safe_load((CONFIG_ROOT / f"{name}.yaml").read_text())
    data, model = config["data"], config["model"]
    kind = data["class_path"].rsplit(".", 1)[-1]
    args = list(TRAINER)
    if kind == "DigitsDataModule":
        args += ["--data.init_args.limit_train", "32", "--data.init_args.limit_eval", "16",
                 "--data.init_args.batch_size", "8", "--data.init_args.cache_dir", str(roots["cache"])]
    elif kind == "MNISTDataModule":
        args += ["--data.init_args.limit_train", "32", "--data.init_args.limit_val", "16",
                 "--data.init_args.batch_size", "8"]
        if model["class_path"].endswith(".GAN"):  # the book's widths cost seconds a step here
            args += ["--model.init_args.generator_channels", "[32, 16, 8, 8]",
                     "--model.init_args.discriminator_channels", "[8, 16, 16]"]
    elif kind == "SegmentationDataModule":
        args += ["--data.init_args.size", "[32, 32]", "--data.init_args.batch_size", "2",
                 "--data.init_args.num_workers", "0", "--model.init_args.width_divisor", "16"]
        for side in ("source", "target"):
            source = data["init_args"].get(side)
            if source is None:
                continue
            if source["kind"] == "rendered":
                args += [f"--data.init_args.{side}.num_train", "4", f"--data.init_args.{side}.num_val", "2"]
            else:
                args += [f"--data.init_args.{side}.root", str(roots[source["kind"]])]
        if data["init_args"].get("fda_beta") is not None:
            args += ["--data.init_args.fda_beta", "0.05"]  # the configs' 0.01 swaps no frequency at 32x32
        if model["class_path"].endswith("SelfTraining"):
            args += ["--model.init_args.threshold_samples", "2"]
    return args


def _order(names: list[str]) -> list[str]:
    """First stages before the self-training configs that start from their checkpoints."""
    return sorted(names, key=lambda n: n.startswith("self_training"))


@pytest.mark.slow
def test_every_config_fits_and_its_saved_config_fits_again(tmp_path):
    roots = {"cityscapes": tmp_path / "cs", "synthia": tmp_path / "syn", "cache": tmp_path / "cache"}
    make_cityscapes(roots["cityscapes"], splits=("train", "val"))
    make_synthia(roots["synthia"])
    plan = [(name, _tiny(name, roots)) for name in _order(EXPERIMENTS)]
    env = dict(os.environ, PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", FITS, json.dumps(plan)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = json.loads(proc.stdout.split("SAVED ", 1)[1])
    assert sorted(saved) == EXPERIMENTS
    for name, configs in saved.items():
        assert len(configs) == 2, (name, configs)  # the fit, and the fit of its saved config
        first, again = (yaml.safe_load((tmp_path / c).read_text()) for c in configs)
        assert first == again, f"{name}: re-running the saved config saved another config"
