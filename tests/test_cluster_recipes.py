"""The cluster recipes in configs/cluster/ (docs/scaling.md): each script, run with stand-ins for `srun` /
`torchrun` that record their command line, starts a `scarce fit` that LightningCLI accepts, on the world the
scheduler gives (nodes x GPUs), DDP, bf16, resuming from last.ckpt."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = {  # recipe -> (environment of a 2-node x 8-GPU job, the launcher variable it takes)
    "slurm.sbatch": ({"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "8", "SLURM_CPUS_PER_TASK": "6"}, "SRUN"),
    "torchrun.sh": ({"NNODES": "2", "GPUS": "8", "MASTER_ADDR": "node0"}, "TORCHRUN"),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_cluster_recipe_starts_a_fit_lightning_cli_accepts(recipe, tmp_path, monkeypatch):
    from scarce.cli import lightning_cli

    (tmp_path / "configs").symlink_to(REPO / "configs")  # the recipes run from the project folder
    record = tmp_path / "record.sh"
    record.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$RECORD"\n')
    record.chmod(0o755)
    env, launcher = RECIPES[recipe]
    result = subprocess.run(["bash", str(REPO / "configs/cluster" / recipe), "--trainer.max_epochs=1"], cwd=tmp_path,
                            env={**os.environ, **env, launcher: str(record), "RECORD": str(tmp_path / "argv")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    fit = argv[argv.index("fit") + 1:]
    assert argv[argv.index("fit") - 1] == "scarce"
    monkeypatch.chdir(tmp_path)
    assert fit[fit.index("configs/trainer/gpu.yaml") - 1] == "--config"
    at = fit.index("--ckpt_path")
    assert fit[at + 1] == "last"
    # Built here (run=False has no subcommand, so no --ckpt_path) on the CPU, as there is no GPU to build the gpu
    # overlay's Trainer on, and with a small network.
    cli = lightning_cli([*fit[:at], *fit[at + 2:], "--trainer.accelerator=cpu", "--trainer.logger=false",
                         "--model.init_args.width_divisor=16"], run=False)
    trainer = cli.trainer
    assert (trainer.num_nodes, trainer.num_devices, type(trainer.strategy).__name__) == (2, 8, "DDPStrategy")
    assert str(trainer.precision) == "bf16-mixed" and trainer.max_epochs == 1
    if recipe == "slurm.sbatch":  # the CPUs of a task, less its main process
        assert cli.datamodule.hparams.num_workers == 5
