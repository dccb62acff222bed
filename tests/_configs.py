"""Experiment configs as data, for the tests that compare their budgets."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def experiment(name: str) -> dict:
    """``configs/<name>.yaml`` with its run folders (the trainer values each config must own: the loggers' save_dir
    and the checkpoint folder) checked to be ``runs/<name>...`` and set to ``runs/X...``, so configs compare equal
    when everything else is."""
    config = yaml.safe_load((REPO / f"configs/{name}.yaml").read_text())
    for logger in config["trainer"]["logger"]:
        assert logger["init_args"]["save_dir"] == f"runs/{name}"
        logger["init_args"]["save_dir"] = "runs/X"
    for callback in config["trainer"]["callbacks"]:
        if "dirpath" in callback.get("init_args", {}):
            assert callback["init_args"]["dirpath"] == f"runs/{name}/checkpoints"
            callback["init_args"]["dirpath"] = "runs/X/checkpoints"
    return config
