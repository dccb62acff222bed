"""No code runs from a checkpoint (issue 14, finding 2), and user errors of `scarce fit` / `render` are one line
(finding 10, training part).

The crafted checkpoint is a real pickle whose `__reduce__` asks the unpickler to call `open(marker, "w")`: loading
it with `weights_only=False` creates the marker file (checked, so the file is a real threat); every way scarce
loads a checkpoint must refuse it with one line naming the file, before the marker exists.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scarce.bench.generative import load_generative_model
from scarce.checkpoints import UnsafeCheckpointError, load_checkpoint
from scarce.cli import main

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")


class _CreatesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {"net.encoder.0.weight": torch.zeros(1)}, "payload": _CreatesMarker(marker)}, path)
    return path, marker


def test_the_crafted_checkpoint_runs_code_when_unpickled(crafted):
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_it_in_one_line(crafted):
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "refused" in message and "\n" not in message
    with pytest.raises(UnsafeCheckpointError):
        load_generative_model(path)  # `scarce bench generative --ckpt`: it used weights_only=False
    assert not marker.exists()


def test_damaged_and_missing_checkpoints_are_one_line(tmp_path):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"\x80\x04garbage that is no pickle")
    for path, words in ((damaged, "not a readable PyTorch checkpoint"), (tmp_path / "none.ckpt", "not found")):
        with pytest.raises(Exception) as err:
            load_checkpoint(path)
        assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_bench_generative_refuses_it(crafted, tmp_path):
    path, marker = crafted
    result = subprocess.run([str(SCARCE), "bench", "generative", "--classifier", str(path)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_fit_resuming_from_it_refuses_it(crafted, tmp_path):
    """Lightning's loader (`--ckpt_path`) with its default, torch's weights_only=True, behind scarce's one line."""
    path, marker = crafted
    result = subprocess.run([str(SCARCE), "fit", "--config", str(REPO / "configs/dann_blobs.yaml"),
                             "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--ckpt_path", str(path)],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "refused by torch.load(weights_only=True)" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_scarce_error_inside_fit_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(REPO / "configs/fcn8s_cityscapes.yaml"), "--trainer.logger=false",
            "--data.init_args.source.root", str(tmp_path / "nonexistent")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert f"scarce fit: error: Cityscapes: no folder '{tmp_path / 'nonexistent'}/leftImg8bit/train'" in err
    assert "Traceback" not in err
    monkeypatch.setenv("SCARCE_DEBUG", "1")  # the traceback, for whoever debugs
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        main(args)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_batch_size_is_refused_before_the_fit_starts(value, tmp_path, monkeypatch, capsys):
    """The DataModules type batch_size as PositiveInt; LightningCLI refuses it while parsing, nothing is built."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(REPO / "configs/dann_blobs.yaml"), f"--data.init_args.batch_size={value}"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"scarce fit: error: --data.batch_size: Not of type PositiveInt: {value} does not conform")
    assert not (tmp_path / "runs").exists()


def test_bad_options_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/dann_blobs.yaml")
    for option, expected in (("--trainer.max_epochs=x", "--trainer.max_epochs: got 'x', expected int or null"),
                             ("--model.init_args.adaptation_wieght=1", "--model: Option 'adaptation_wieght' is not")):
        with pytest.raises(SystemExit) as exc:
            main(["fit", "--config", config, option])
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize("flag, values", [("--size", ["0", "0"]), ("--size", ["64", "-1"]), ("--shards", ["0"]),
                                          ("--preview", ["-1"])])
def test_render_refuses_bad_sizes_before_any_work(flag, values, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["render", "--preset", "synthetic-flat", "--out", str(out), "--num-samples", "2", flag, *values])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} must be" in err and " ".join(values) in err
    assert not out.exists()
