"""`make gpu-check` (benchmarks/gpu_check.py, scarce.bench.gpu) without a GPU: the GPU rows skip with a clear
message, and their code (FCN-8s model-only loop, `scarce fit` with gpu_decode and the images/s callback) runs on
the CPU at toy sizes."""

import pytest
import torch

from scarce.bench.gpu import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without CUDA")
def test_without_cuda_the_gpu_rows_say_they_are_skipped(capsys):
    assert main(["--skip", "pipeline", "render"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA here: the GPU rows are skipped" in out
    for row in ("gpu-marked tests", "model-only", "scarce fit"):
        line = next(line for line in out.splitlines() if line.startswith(row) or row in line.split("  ")[0])
        assert "skipped" in line and "no CUDA on this machine" in line


def test_gpu_rows_rehearsed_on_cpu(tmp_path, capsys):
    argv = ["--rehearse-on-cpu", "--skip", "tests", "pipeline", "render", "--records", "16", "--source-size", "32",
            "48", "--size", "32", "32", "--batch-size", "4", "--workers", "1", "--model-steps", "1", "--fit-steps",
            "4", "--width-divisor", "32", "--out", str(tmp_path)]
    assert main(argv) == 0
    rows = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    model = rows["FCN-8s 32x32 model-only, eager"]
    fit = rows["scarce fit, JPEG shards, gpu_decode, bf16, channels-last"]
    assert "img/s" in model and "MFU n/a" in model  # no GPU peak to divide by
    assert "img/s" in fit and "% of model-only" in fit
    assert (tmp_path / "fit_images_per_second.json").is_file()


def test_a_failing_row_is_one_line_and_the_table_still_prints(capsys):
    argv = ["--rehearse-on-cpu", "--skip", "tests", "pipeline", "render", "fit", "--size", "32", "32",
            "--batch-size", "2", "--model-steps", "1", "--width-divisor", "0"]  # FCN-8s refuses a divisor of 0
    assert main(argv) == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if "model-only" in line)
    assert "error" in line and "FAILED" in line and "ValueError" in line
