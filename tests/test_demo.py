"""`scarce demo` end to end on a few digits: both models trained at once in spawned processes, phases timed."""

import json

from scarce.demo import main


def test_demo_trains_both_models_at_once_and_times_every_phase(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCARCE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--limit-train", "128", "--limit-eval", "64", "--dann-epochs", "2",
                 "--source-only-epochs", "1", "--jobs", "2"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["jobs"] == 2 and report["threads_per_job"] >= 1
    for name, epochs in (("source_only", 1), ("dann", 2)):
        assert report["results"][name]["epochs"] == epochs
        assert 0.0 <= report["results"][name]["target_test_acc"] <= 1.0
        assert set(report["phases"][name]) == {"setup", "data", "fit", "test", "t-SNE"}
    printed = capfd.readouterr().out  # the processes print to the inherited stdout
    assert "[demo] dann: epoch 2/2" in printed and "[demo] source_only: t-SNE" in printed
    assert (out / "embedding.png").stat().st_size > 0 and (out / "samples.png").stat().st_size > 0


def test_demo_refuses_a_jobs_count_it_cannot_use(tmp_path):
    import pytest

    from scarce._errors import ScarceError

    with pytest.raises(ScarceError, match="--jobs 3"):
        main(["--out", str(tmp_path), "--jobs", "3"])
