"""Benchmarks have one home each way they are run: `scarce bench NAME` (package programs in `scarce.bench`) and
`python benchmarks/NAME.py` (scripts reproducing benchmarks/RESULTS.md); every one of them answers `--help`."""

import ast
import csv
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from scarce.cli import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_scarce_bench_command_lives_in_scarce_bench_and_has_help(name, capsys):
    module_name, func = BENCHMARKS[name][0].split(":")
    assert module_name == f"scarce.bench.{name}", f"`scarce bench {name}` must live in scarce/bench/{name}.py"
    out = _help(getattr(importlib.import_module(module_name), func), capsys)
    assert f"usage: scarce bench {name}" in out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_is_documented_and_has_help(script, capsys):
    tree = ast.parse(script.read_text())
    doc = ast.get_docstring(tree)
    assert doc and f"benchmarks/{script.name}" in doc, f"{script.name}: the docstring must show how to run it"
    assert any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body), (
        f"{script.name}: needs `if __name__ == \"__main__\": sys.exit(main())`")
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ block does not run
    assert "usage:" in _help(module.main, capsys)


def _realism_gap():
    spec = importlib.util.spec_from_file_location("_bench_realism_gap", REPO / "benchmarks/realism_gap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_realism_gap_rows_name_existing_configs_or_say_which_is_missing():
    module = _realism_gap()
    for name, (config, extra, _) in module.ROWS.items():
        assert config is None or config.endswith(".yaml"), name
        assert all(arg.startswith("--") for arg in extra), name


def test_realism_gap_table_shares_and_verdicts():
    """Share of the gap = (row - source-only) / (oracle - source-only) on mean held-out target mIoU; targets judged."""
    module = _realism_gap()

    def runs(name, test_miou, acc=0.95, source=0.7):
        return [{"row": name, "seed": s, "seconds": 100.0, "val/source_miou": source, "val/source_acc": acc,
                 "val/target_miou": m,
                 "val/target_acc": acc, "test/miou": m, "test/acc": acc} for s, m in enumerate(test_miou)]

    results = {"background": runs("background", [0.12, 0.12, 0.12], acc=0.88, source=0.12),
               "source-only": runs("source-only", [0.10, 0.12, 0.14]), "oracle": runs("oracle", [0.70, 0.72, 0.74]),
               "MinEnt": runs("MinEnt", [0.40, 0.42, 0.44]), "FDA": runs("FDA", [0.20, 0.22, 0.24])}
    text, ok = module.table(results)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["MinEnt"][5] == "50%" and rows["FDA"][5] == "17%"  # (0.42 - 0.12) / 0.6, (0.22 - 0.12) / 0.6
    assert rows["oracle"][1] == "-" and rows["source-only"][3] == "0.120 +- 0.020"
    assert ok and "'MinEnt' closes 50%" in text
    # The targets are means of 3 seeds: with 2 of them nothing is judged met yet.
    two_seeds = {name: runs[:2] for name, runs in results.items()}
    text, ok = module.table(two_seeds)
    assert not ok and "met on 2 of 3 seeds, not judged yet" in text
    # A row better on validation with fewer seeds does not displace the judged row: it is named as pending.
    partial = {**results, "AdvEnt": runs("AdvEnt", [0.50, 0.52])}
    text, ok = module.table(partial)
    assert ok and "'MinEnt' closes 50%" in text
    assert "pending: 'AdvEnt' scores higher on validation with 2 of 3 seeds (closes 65% of the gap so far)" in text
    assert "pending" not in module.table({**results, "AdvEnt": runs("AdvEnt", [0.30, 0.32])})[0]
    # The best row is chosen on validation: a row that only the held-out scenes favour is not picked.
    results["FDA"] = [dict(run, **{"test/miou": 0.9}) for run in runs("FDA", [0.20, 0.22, 0.24])]
    assert "'MinEnt' closes 50%" in module.table(results)[0]
    results["FDA"] = runs("FDA", [0.20, 0.22, 0.24])
    results["MinEnt"] = runs("MinEnt", [0.40, 0.41, 0.43])  # 49 %: the target is not met
    assert not module.table(results)[1]
    results["MinEnt"] = runs("MinEnt", [0.60, 0.60, 0.60], acc=0.80)  # pixel accuracy below predicting background
    assert not module.table(results)[1]
    results["MinEnt"] = runs("MinEnt", [0.40, 0.42, 0.44])
    results["oracle"] = runs("oracle", [0.58, 0.58, 0.58])  # the oracle below 0.60: the task is not real yet
    text, ok = module.table(results)
    assert not ok and "oracle: test/miou 0.580 (>= 0.60), test/acc 0.950 vs background 0.880: NOT met" in text


def test_realism_gap_table_only_reads_the_result_files_and_fits_nothing(tmp_path, capsys):
    module = _realism_gap()
    record = {"seconds": 10.0, "val/source_miou": 0.7, "val/source_acc": 0.97, "val/target_miou": 0.3,
              "val/target_acc": 0.9, "test/miou": 0.3, "test/acc": 0.9}
    for name, seeds in (("source-only", [0, 1]), ("randomized", [0, 1]), ("oracle", [0])):
        for seed in seeds:
            path = tmp_path / name / f"seed{seed}.json"
            path.parent.mkdir(exist_ok=True)
            # randomized seed 1 and the oracle were fitted with other configs: stale, left out of the table
            stale = (name, seed) in (("randomized", 1), ("oracle", 0))
            fingerprint = "0" * 16 if stale else module.config_fingerprint(name)
            path.write_text(json.dumps({**record, "row": name, "seed": seed, "config_fingerprint": fingerprint}))
    code = module.main(["--table-only", "--results", str(tmp_path), "--out", str(tmp_path / "runs")])
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert set(rows) == {"row", "---", "source-only", "randomized"}
    assert rows["source-only"][3] == "0.300 +- 0.000" and rows["randomized"][3] == "0.300"  # one seed: no spread
    assert rows["randomized"][-1] == "0 |" and code == 0 and not (tmp_path / "runs").exists()
    assert "fitted with other configs than the current ones: oracle seed 0, randomized seed 1" in text


def test_realism_gap_table_md_holds_every_current_result_file_whichever_run_fitted_it(tmp_path):
    module = _realism_gap()
    record = {"seconds": 10.0, "val/source_miou": 0.7, "val/source_acc": 0.97, "val/target_miou": 0.3,
              "val/target_acc": 0.9, "test/miou": 0.3, "test/acc": 0.9}
    # Two earlier runs: source-only seeds 0 and 1, randomized seed 4 (stale: fitted with another config).
    for name, seed, fingerprint in (("source-only", 0, None), ("source-only", 1, None), ("randomized", 4, "0" * 16)):
        path = tmp_path / name / f"seed{seed}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({**record, "row": name, "seed": seed,
                                    "config_fingerprint": fingerprint or module.config_fingerprint(name)}))
    assert module.seeds_on_disk(tmp_path) == [0, 1, 4]
    module.write_table(tmp_path)
    text = (tmp_path / "table.md").read_text()
    assert "| source-only | 0.700 +- 0.000 |" in text and "| 0 1 |" in text
    assert "| randomized |" not in text and "other configs than the current ones: randomized seed 4" in text


def test_realism_gap_last_row_reads_the_newest_version_by_number(tmp_path):
    module = _realism_gap()
    for version, miou in ((2, "0.2"), (9, "0.9"), (10, "0.1")):  # as strings, version_9 would sort last
        folder = tmp_path / "runs" / "fit" / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(f"step,test/miou,test/acc\n5,{miou},0.5\n")
    assert module.last_row(tmp_path, ("test/miou", "test/acc")) == {"test/miou": 0.1, "test/acc": 0.5}


def test_realism_gap_last_row_reads_the_newest_version_that_has_the_keys(tmp_path):
    """A resume with nothing left to train logs no validation: the figures are in the version before it."""
    module = _realism_gap()
    for version, text in ((0, "step,val/a\n5,0.3\n9,0.4\n"), (1, "step,train/loss\n10,0.5\n")):
        folder = tmp_path / "runs" / "fit" / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(text)
    assert module.last_row(tmp_path, ("val/a",)) == {"val/a": 0.4}
    with pytest.raises(ValueError, match="has a row with"):
        module.last_row(tmp_path, ("val/b",))


def _last_ckpt(run_dir: Path, mtime: float) -> Path:
    path = run_dir / "runs" / "fcn8s_rendered" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    os.utime(path, (mtime, mtime))
    return path


def test_realism_gap_resumes_only_a_stopped_fit_of_the_current_configs_and_seed(tmp_path):
    module = _realism_gap()
    run_dir, source_only = tmp_path / "seed0", module.config_fingerprint("source-only")
    state = module.start_fit(run_dir, source_only, 0, reuse=True)  # nothing there: a new fit
    assert state["attempts"][0].get("resume_from") is None and not state["done"]
    # Started 200 s ago, stopped (SIGKILL: no word from it) after writing last.ckpt 100 s in; its later batches are lost.
    state["attempts"][0]["started"] -= 200
    (run_dir / "fit.json").write_text(json.dumps(state))
    checkpoint = _last_ckpt(run_dir, time.time() - 100)
    state = module.start_fit(run_dir, source_only, 0, reuse=True)
    assert state["attempts"][0]["kept_seconds"] == pytest.approx(100, abs=1)
    assert state["attempts"][1]["resume_from"] == str(checkpoint.resolve())
    # The resume is stopped before it writes a checkpoint: it adds nothing; the next resume starts from the same file.
    state = module.start_fit(run_dir, source_only, 0, reuse=True)
    assert state["attempts"][1]["kept_seconds"] == 0 and len(state["attempts"]) == 3
    state["attempts"][2]["started"] -= 50  # the third attempt runs 50 s to the end
    assert module.finish_fit(run_dir, state) == pytest.approx(150, abs=1)
    # Done: a rerun (killed during its test) trains no more and keeps the seconds.
    again = module.start_fit(run_dir, source_only, 0, reuse=True)
    assert again["done"] and len(again["attempts"]) == 3 and checkpoint.is_file()
    assert module.finish_fit(run_dir, again) == pytest.approx(150, abs=1)
    # Another seed, another row's fingerprint, or no --reuse: the folder is emptied and the fit starts over.
    for name, seed, reuse in (("source-only", 1, True), ("oracle", 0, True), ("source-only", 0, False)):
        _last_ckpt(run_dir, time.time())
        state = module.start_fit(run_dir, module.config_fingerprint(name), seed, reuse=reuse)
        assert len(state["attempts"]) == 1 and not checkpoint.exists(), (name, seed, reuse)
        assert json.loads((run_dir / "fit.json").read_text())["seed"] == seed
    # Stopped before its first last.ckpt: nothing to resume from, so it starts over.
    state = module.start_fit(run_dir, source_only, 0, reuse=True)
    assert len(state["attempts"]) == 1 and "resume_from" not in state["attempts"][0]


def test_realism_gap_second_stage_resumes_only_from_the_teacher_checkpoint_it_started_from(tmp_path):
    module = _realism_gap()
    teacher_dir, student_dir = tmp_path / "source-only" / "seed0", tmp_path / "self-training" / "seed0"
    source_only, self_training = module.config_fingerprint("source-only"), module.config_fingerprint("self-training")
    # A stopped teacher is not a teacher: its last.ckpt is half-trained.
    state = module.start_fit(teacher_dir, source_only, 0, reuse=True)
    teacher = _last_ckpt(teacher_dir, time.time() - 100)
    assert module.finished_checkpoint(teacher_dir, source_only, 0) is None
    module.finish_fit(teacher_dir, state)
    assert module.finished_checkpoint(teacher_dir, source_only, 0) == teacher.resolve()
    assert module.finished_checkpoint(teacher_dir, source_only, 1) is None  # another seed's
    assert module.finished_checkpoint(teacher_dir, self_training, 0) is None  # another row's configs
    first = module.teacher_identity(teacher.resolve())
    module.start_fit(student_dir, self_training, 0, reuse=True, teacher=first)
    _last_ckpt(student_dir, time.time())
    state = module.start_fit(student_dir, self_training, 0, reuse=True, teacher=first)
    assert state["attempts"][-1]["resume_from"] and state["teacher"] == first
    # The teacher was fitted again (its last.ckpt rewritten): the stopped student of the old one starts over.
    _last_ckpt(teacher_dir, time.time())
    second = module.teacher_identity(teacher.resolve())
    assert second != first
    state = module.start_fit(student_dir, self_training, 0, reuse=True, teacher=second)
    assert len(state["attempts"]) == 1 and "resume_from" not in state["attempts"][0]
    assert state["teacher"] == second and module._checkpoint(student_dir) is None


def test_realism_gap_run_lock_is_held_while_a_fit_it_started_lives(tmp_path):
    """A fit left running by a killed script keeps its run folder locked: a rerun says so instead of resuming next to
    it (two processes writing one last.ckpt)."""
    module = _realism_gap()
    run_dir = tmp_path / "AdvEnt" / "seed0"
    lock = module.hold_run_lock(run_dir)
    with pytest.raises(RuntimeError, match="AdvEnt/seed0: a fit still runs there"):
        module.hold_run_lock(run_dir)
    child = subprocess.Popen(["sleep", "30"], pass_fds=(lock,))  # as _scarce hands the lock to `scarce fit`
    try:
        os.close(lock)  # the script is gone; its fit is not
        with pytest.raises(RuntimeError, match="a fit still runs there"):
            module.hold_run_lock(run_dir)
    finally:
        child.kill()
        child.wait()
    os.close(module.hold_run_lock(run_dir))  # the fit is gone too: free


def _tiny_configs(configs: Path, epochs: int = 10, shrink: tuple[str, ...] = ("fcn8s_rendered.yaml",)) -> None:
    """Copy the configs to ``configs``, each of ``shrink`` (default: fcn8s_rendered.yaml) shrunk to ``epochs`` epochs
    of 4 batches of 32x32 scenes, last.ckpt every 4 batches."""
    configs.mkdir()
    for other in (REPO / "configs").glob("*.yaml"):  # the table reads every row's fingerprint
        (configs / other.name).write_text(other.read_text())
    for name in shrink:
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        config["trainer"].update(max_epochs=epochs, log_every_n_steps=1, enable_model_summary=False)
        for callback in config["trainer"]["callbacks"]:
            if callback["class_path"].endswith("ResumeCheckpoint"):
                callback["init_args"]["every_n_batches"] = 4
        config["model"]["init_args"]["width_divisor"] = 16
        if "threshold_samples" in config["model"]["init_args"]:
            config["model"]["init_args"]["threshold_samples"] = 4
        data = config["data"]["init_args"]
        data.update(size=[32, 32], batch_size=2, num_workers=0)
        for domain in ("source", "target"):
            data[domain].update(num_train=8, num_val=2)
        (configs / name).write_text(yaml.safe_dump(config))


def _main(module, argv: list[str]) -> int:
    """The script's ``main(argv)``, with pytest's SIGTERM handler put back after it (main() installs its own)."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return module.main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_stopped_at_first_checkpoint(module, argv: list[str], run_dir: Path) -> None:
    """Run the script's ``main(argv)`` and SIGTERM it (as `kill PID` would; main() handles it in this, the main,
    thread) once a last.ckpt appears under ``run_dir``; it must exit 143."""
    def stop_at_the_first_checkpoint():
        deadline = time.monotonic() + 300
        while not list(run_dir.glob("runs/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_at_the_first_checkpoint, daemon=True)
    watcher.start()
    assert _main(module, argv) == 143
    watcher.join()


def test_realism_gap_fit_stopped_by_sigterm_resumes_with_reuse(tmp_path, monkeypatch, capsys):
    """The script passes SIGTERM on to its fit, which saves last.ckpt; the same command with --reuse resumes it (real
    `scarce fit` processes, a tiny source-only config) instead of starting over."""
    module = _realism_gap()
    _tiny_configs(tmp_path / "configs")
    monkeypatch.setattr(module, "REPO", tmp_path)
    run_dir, results = tmp_path / "runs" / "source-only" / "seed0", tmp_path / "results"
    argv = ["--rows", "source-only", "--seeds", "0", "--threads", "1", "--test-scenes", "2", "--reuse",
            "--out", str(tmp_path / "runs"), "--results", str(results)]

    _run_stopped_at_first_checkpoint(module, argv, run_dir)
    assert "stopped by SIGTERM; the same command with --reuse resumes" in capsys.readouterr().err
    assert not (results / "source-only" / "seed0.json").exists()
    state = json.loads((run_dir / "fit.json").read_text())
    assert not state["done"] and len(state["attempts"]) == 1 and state["attempts"][0]["cpu_seconds"] > 0
    steps_saved = torch.load(next(run_dir.glob("runs/*/checkpoints/last.ckpt")), weights_only=False)["global_step"]
    assert 4 <= steps_saved < 40

    assert _main(module, argv) == 0  # no background row, so no verdict; not the 143 of a stop
    record = json.loads((results / "source-only" / "seed0.json").read_text())
    assert record["attempts"] == 2 and record["seconds"] > 0
    # The command that reproduces the fit, not the resume of it.
    assert record["command"] == ("scarce fit --config configs/fcn8s_rendered.yaml --seed_everything=0 "
                                 "--trainer.enable_progress_bar=false")
    assert record["cpu_seconds"] > state["attempts"][0]["cpu_seconds"]  # both attempts' processes
    # Both domains were read from scenes rendered once (the same scenes: test_segmentation.py), not in the fit.
    assert len(record["scenes"]) == 2 and all(s.startswith("runs/scenes/") for s in record["scenes"])
    assert {Path(s).name.split("-")[0] for s in record["scenes"]} == {"synthetic", "photo"}
    assert {"val/source_miou", "test/miou"} <= record.keys()
    # It resumed: the second start logged no step before the one saved, and ran to the end.
    versions = sorted(run_dir.glob("runs/*/csv/version_*/metrics.csv"))
    assert len(versions) == 2
    steps = [int(row["step"]) for row in csv.DictReader(versions[1].open())]
    assert min(steps) >= steps_saved - 1 and max(steps) >= 39, (steps_saved, steps[:3], steps[-3:])
    assert (run_dir / "log.txt").read_text().count("stopped by SIGTERM") == 1


def test_realism_gap_scene_folders_follow_the_config_and_are_rendered_again_when_their_scenes_differ(tmp_path):
    """Each row's rendered domains as its config and arguments leave them; a folder is reused only when its first
    scenes render again byte for byte the same (real `scarce render` processes, tiny scenes)."""
    module = _realism_gap()
    domains = module.rendered_domains("randomized + FDA + AdvEnt", [], 256)
    assert domains["source"] == {"preset": "randomized", "size": [128, 128],
                                 "splits": {"train": [0, 4000], "val": [1, 64], "test": [2, 256]}}
    assert domains["target"]["preset"] == "photo-clutter" and domains["target"]["splits"]["test"] == [102, 256]
    assert module.rendered_domains("oracle", ["data.init_args.source.seed=5"], 8)["source"]["splits"]["val"] == [6, 64]

    args = module.argparse.Namespace(scenes=tmp_path / "scenes")
    scenes = {"preset": "synthetic-flat", "size": [16, 16], "splits": {"train": [0, 3], "val": [1, 2]}}
    folder = module.prepare_scenes(scenes, args)
    log = tmp_path / "scenes" / "log.txt"
    assert log.read_text().count("scarce render") == 1  # nothing there yet: rendered, nothing to check
    module._scenes_checked.clear()  # as a later run of the script
    assert module.prepare_scenes(scenes, args) == folder
    assert log.read_text().count("scarce render") == 2  # checked, kept
    before = (folder / "train-00000-of-00001.tfrecord").read_bytes()
    # Scenes of another seed under the expected seeds' names: only the byte check can tell.
    meta = json.loads((folder / "render_config.json").read_text())
    subprocess.run([str(Path(module.sys.executable).with_name("scarce")), "render", "--preset", "synthetic-flat",
                    "--out", str(folder), "--size", "16", "16", "--preview", "0", "--overwrite",
                    "--split", "train", "9", "3", "--split", "val", "1", "2"], check=True, capture_output=True)
    assert (folder / "train-00000-of-00001.tfrecord").read_bytes() != before
    (folder / "render_config.json").write_text(json.dumps(meta))
    module._scenes_checked.clear()
    module.prepare_scenes(scenes, args)
    assert log.read_text().count("scarce render") == 4  # checked, found different, rendered again
    assert (folder / "train-00000-of-00001.tfrecord").read_bytes() == before
    assert not list((tmp_path / "scenes").glob(".check-*"))


def test_realism_gap_validation_only_fits_a_setting_without_touching_the_held_out_scenes(tmp_path, monkeypatch,
                                                                                         capsys):
    """--validation-only --set fits the row with the setting (a real tiny `scarce fit`), records its validation figures
    as a variant of its own and never runs the held-out test; the committed row's results stay untouched."""
    module = _realism_gap()
    _tiny_configs(tmp_path / "configs")
    monkeypatch.setattr(module, "REPO", tmp_path)
    results, out = tmp_path / "results", tmp_path / "runs"
    lr = "model.init_args.optimizer.init_args.lr=0.01"
    argv = ["--validation-only", "--rows", "source-only", "--seeds", "0", "--threads", "1", "--set", lr, "--reuse",
            "--out", str(out), "--results", str(results)]
    assert module.main(argv) == 0
    variant = results / "validation" / "source-only" / lr / "seed0.json"
    record = json.loads(variant.read_text())
    assert record["settings"] == [lr]
    assert record["config_fingerprint"] == module.config_fingerprint("source-only", [lr])
    assert record["config_fingerprint"] != module.config_fingerprint("source-only")
    assert record["command"].endswith(f"--seed_everything=0 --{lr} --trainer.enable_progress_bar=false")
    assert {"val/source_miou", "val/target_miou", "val/target_acc"} <= record.keys()
    assert not any(key.startswith("test/") for key in record)
    run_dir = out / "validation" / "source-only" / lr / "seed0"
    assert not (run_dir / "test").exists() and not (results / "source-only").exists()
    assert "Testing" not in (run_dir / "log.txt").read_text()
    # The fit ran with the setting: LightningCLI's saved config has it.
    saved = yaml.safe_load(next(run_dir.glob("runs/*/csv/version_0/config.yaml")).read_text())
    assert saved["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.01
    printed = capsys.readouterr().out
    assert f"| source-only | {lr} | " in printed and f"source-only: one variant so far: {lr}" in printed
    # --reuse keeps the variant (no second fit); --table-only --validation-only prints it from the file.
    assert module.main(argv) == 0
    assert len(list(run_dir.glob("runs/*/csv/version_*"))) == 1
    assert module.main(["--validation-only", "--table-only", "--results", str(results)]) == 0
    assert f"| source-only | {lr} | {record['val/source_miou']:.3f} |" in capsys.readouterr().out
    # The row's own fit (committed configs, held-out test and all) is its "committed" variant on validation, so
    # the setting is compared with it without fitting the committed configs a second time.
    assert module.main(["--rows", "source-only", "--seeds", "0", "--threads", "1", "--out", str(out),
                        "--results", str(results)]) == 0
    row = json.loads((results / "source-only" / "seed0.json").read_text())
    capsys.readouterr()
    assert module.main(["--validation-only", "--table-only", "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert f"| source-only | committed | {row['val/source_miou']:.3f} |" in printed
    top = lr if record["val/target_miou"] > row["val/target_miou"] else "committed"  # a tie keeps the configs
    assert f"source-only: best on validation target mIoU (seeds 0): {top} (" in printed
    assert not (results / "validation" / "source-only" / "committed").exists()


def test_realism_gap_validation_table_compares_settings_with_the_rows_own_fits_on_shared_seeds(tmp_path):
    """The row's own result files are its committed variant; a setting fitted on seed 0 is judged against the
    committed row's seed 0, not against its mean over seeds 0 and 1 (here the two orders differ); a tie keeps the
    committed configs."""
    module = _realism_gap()
    weight = "model.init_args.entropy_weight=0.01"

    def write(path: Path, seed: int, target: float, settings: list[str]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / f"seed{seed}.json").write_text(json.dumps({
            "row": "MinEnt", "seed": seed, "seconds": 100.0, "val/source_miou": 0.7, "val/target_miou": target,
            "val/target_acc": 0.9, "settings": settings,
            "config_fingerprint": module.config_fingerprint("MinEnt", settings)}))

    write(tmp_path / "MinEnt", 0, 0.20, [])
    write(tmp_path / "MinEnt", 1, 0.60, [])
    write(tmp_path / "validation" / "MinEnt" / weight, 0, 0.30, [weight])
    text = module.validation_table(tmp_path, ["MinEnt"])
    assert "| MinEnt | committed | 0.700 +- 0.000 | 0.400 +- 0.283 | 0.900 +- 0.000 | 100 | 0 1 |" in text
    assert f"| MinEnt | {weight} | 0.700 | 0.300 | 0.900 | 100 | 0 |" in text
    assert f"MinEnt: best on validation target mIoU (seeds 0): {weight} (committed 0.200, {weight} 0.300)" in text
    assert f"MinEnt: {weight} against committed (seeds 0): 0.300 vs 0.200, ahead on 1 of 1 seeds" in text
    # A second seed of the setting: judged against the committed seeds 0 and 1 seed by seed, where the ranking
    # (which also has a variant fitted on seed 0 alone) still uses seed 0.
    write(tmp_path / "validation" / "MinEnt" / weight, 1, 0.50, [weight])
    write(tmp_path / "validation" / "MinEnt" / "model.init_args.entropy_weight=0.1", 0, 0.10,
          ["model.init_args.entropy_weight=0.1"])
    text = module.validation_table(tmp_path, ["MinEnt"])
    assert f"MinEnt: best on validation target mIoU (seeds 0): {weight} (" in text
    assert f"MinEnt: {weight} against committed (seeds 0 1): 0.400 vs 0.400, ahead on 1 of 2 seeds" in text
    assert "MinEnt: model.init_args.entropy_weight=0.1 against committed (seeds 0): 0.100 vs 0.200, ahead on 0 of " \
           "1 seeds" in text
    write(tmp_path / "validation" / "MinEnt" / weight, 0, 0.20, [weight])
    assert "MinEnt: best on validation target mIoU (seeds 0): committed (" in module.validation_table(tmp_path,
                                                                                                      ["MinEnt"])


def test_realism_gap_second_stage_starts_from_its_teacher_rows_checkpoint_fitted_first(tmp_path, monkeypatch, capsys):
    """``--rows self-training`` with no source-only result: the script fits and tests the teacher row first (real
    tiny `scarce fit`s), then the second stage from the teacher's last.ckpt of the same seed."""
    module = _realism_gap()
    _tiny_configs(tmp_path / "configs", epochs=2,
                      shrink=("fcn8s_rendered.yaml", "self_training_fcn8s_rendered.yaml"))
    monkeypatch.setattr(module, "REPO", tmp_path)
    results, out = tmp_path / "results", tmp_path / "runs"
    argv = ["--rows", "self-training", "--seeds", "0", "--threads", "1", "--test-scenes", "2",
            "--out", str(out), "--results", str(results)]
    assert module.main(argv) == 0
    teacher = json.loads((results / "source-only" / "seed0.json").read_text())
    student = json.loads((results / "self-training" / "seed0.json").read_text())
    assert {"val/target_miou", "test/miou"} <= teacher.keys() & student.keys()
    checkpoint = next((out / "source-only" / "seed0").glob("runs/*/checkpoints/last.ckpt"))
    # The command as run from the repository (the REPO the script was given).
    assert f"--model.init_args.init_checkpoint={checkpoint.relative_to(tmp_path)} " in student["command"]
    assert student["config_fingerprint"] == module.config_fingerprint("self-training")
    printed = capsys.readouterr().out
    assert printed.index("source-only seed 0:") < printed.index("self-training seed 0:")


def _committed_teacher_result(module, results: Path) -> dict:
    """Write source-only's seed-0 result file of the current configs, as a fresh clone has it without the run that
    made it; returns the record."""
    committed = {"row": "source-only", "seed": 0, "seconds": 1.0, "command": "an earlier fit",
                 "config_fingerprint": module.config_fingerprint("source-only"), "val/source_miou": 0.5,
                 "val/source_acc": 0.9, "val/target_miou": 0.1, "val/target_acc": 0.5, "test/miou": 0.1,
                 "test/acc": 0.5}
    (results / "source-only").mkdir(parents=True)
    (results / "source-only" / "seed0.json").write_text(json.dumps(committed))
    return committed


def test_realism_gap_second_stage_resumes_a_stopped_teacher_before_starting(tmp_path, monkeypatch, capsys):
    """A fresh clone has the teacher row's result file but not its run: the teacher is fitted again, and when that
    fit is stopped (SIGTERM), its half-trained last.ckpt must not pass for the teacher. The rerun with --reuse resumes
    the teacher to its end (real tiny `scarce fit`s), rewrites its result file, then starts the second stage from it."""
    module = _realism_gap()
    epochs = 3
    _tiny_configs(tmp_path / "configs", epochs=epochs,
                  shrink=("fcn8s_rendered.yaml", "self_training_fcn8s_rendered.yaml"))
    monkeypatch.setattr(module, "REPO", tmp_path)
    results, out = tmp_path / "results", tmp_path / "runs"
    teacher_dir = out / "source-only" / "seed0"
    _committed_teacher_result(module, results)
    argv = ["--rows", "self-training", "--seeds", "0", "--threads", "1", "--test-scenes", "2", "--reuse",
            "--out", str(out), "--results", str(results)]

    _run_stopped_at_first_checkpoint(module, argv, teacher_dir)
    assert not (out / "self-training").exists()  # the stopped teacher started nothing
    stopped = next(teacher_dir.glob("runs/*/checkpoints/last.ckpt"))
    assert torch.load(stopped, weights_only=False)["global_step"] < 4 * epochs
    assert _main(module, argv) == 0
    teacher = json.loads((results / "source-only" / "seed0.json").read_text())
    assert teacher["attempts"] == 2 and teacher["command"] != "an earlier fit"  # resumed, and the file rewritten
    checkpoint = next(teacher_dir.glob("runs/*/checkpoints/last.ckpt"))
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 4 * epochs
    student = json.loads((results / "self-training" / "seed0.json").read_text())
    assert f"--model.init_args.init_checkpoint={checkpoint.relative_to(tmp_path)} " in student["command"]
    state = json.loads((out / "self-training" / "seed0" / "fit.json").read_text())
    assert state["teacher"] == module.teacher_identity(checkpoint.resolve())


def test_realism_gap_validation_only_second_stage_fits_its_teacher_without_the_held_out_test(tmp_path, monkeypatch,
                                                                                             capsys):
    """A clone with the teacher row's result file but not its run: choosing a second stage's setting fits the teacher
    as its committed validation variant (real tiny `scarce fit`s), with no held-out test and the teacher's result
    file untouched, starts the setting from that teacher, and the second stage's own committed variant from the same
    one without fitting the teacher again."""
    module = _realism_gap()
    _tiny_configs(tmp_path / "configs", epochs=2,
                  shrink=("fcn8s_rendered.yaml", "self_training_fcn8s_rendered.yaml"))
    monkeypatch.setattr(module, "REPO", tmp_path)
    results, out = tmp_path / "results", tmp_path / "runs"
    committed = _committed_teacher_result(module, results)
    portion = "model.init_args.portion=0.5"
    argv = ["--validation-only", "--rows", "self-training", "--seeds", "0", "--threads", "1", "--reuse",
            "--out", str(out), "--results", str(results)]
    assert module.main([*argv, "--set", portion]) == 0

    assert json.loads((results / "source-only" / "seed0.json").read_text()) == committed
    assert not (out / "source-only").exists()
    teacher_dir = out / "validation" / "source-only" / "committed" / "seed0"
    assert "Testing" not in (teacher_dir / "log.txt").read_text() and not (teacher_dir / "test").exists()
    teacher = json.loads((results / "validation" / "source-only" / "committed" / "seed0.json").read_text())
    assert teacher["settings"] == [] and not any(key.startswith("test/") for key in teacher)
    checkpoint = next(teacher_dir.glob("runs/*/checkpoints/last.ckpt"))
    variant = json.loads((results / "validation" / "self-training" / portion / "seed0.json").read_text())
    assert f"--model.init_args.init_checkpoint={checkpoint.relative_to(tmp_path)} " in variant["command"]
    assert not any(key.startswith("test/") for key in variant)
    assert not (results / "self-training").exists()
    # The second stage's committed variant: from the same teacher checkpoint, which is not fitted a second time.
    assert module.main(argv) == 0
    own = json.loads((results / "validation" / "self-training" / "committed" / "seed0.json").read_text())
    assert f"--model.init_args.init_checkpoint={checkpoint.relative_to(tmp_path)} " in own["command"]
    assert len(list(teacher_dir.glob("runs/*/csv/version_*"))) == 1
    printed = capsys.readouterr().out
    assert f"self-training: {portion} against committed (seeds 0): " in printed


def test_realism_gap_validation_table_ranks_variants_and_leaves_out_stale_ones(tmp_path, monkeypatch):
    module = _realism_gap()
    weights = {"0.001": (0.30, 0.31), "0.01": (0.35, 0.33), "0.1": (0.12, 0.12)}
    for weight, target_mious in weights.items():
        settings = [f"model.init_args.entropy_weight={weight}"]
        for seed, target_miou in enumerate(target_mious):
            path = tmp_path / "validation" / "MinEnt" / module.settings_slug(settings) / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            fingerprint = "0" * 16 if (weight, seed) == ("0.1", 1) else module.config_fingerprint("MinEnt", settings)
            path.write_text(json.dumps({"row": "MinEnt", "seed": seed, "settings": settings, "seconds": 10.0,
                                        "config_fingerprint": fingerprint, "val/source_miou": 0.8,
                                        "val/source_acc": 0.9, "val/target_miou": target_miou,
                                        "val/target_acc": 0.9}))
    text = module.validation_table(tmp_path, ["MinEnt", "AdvEnt"])
    assert "| MinEnt | model.init_args.entropy_weight=0.01 | 0.800 +- 0.000 | 0.340 +- 0.014 | 0.900 +- 0.000 | 10 | " \
           "0 1 |" in text
    assert "| MinEnt | model.init_args.entropy_weight=0.1 | 0.800 | 0.120 | 0.900 | 10 | 0 |" in text  # seed 1 stale
    # Compared on seed 0 alone: the one seed every current variant has.
    assert "MinEnt: best on validation target mIoU (seeds 0): model.init_args.entropy_weight=0.01 (" in text
    assert "left out, fitted with other configs than the current ones: MinEnt model.init_args.entropy_weight=0.1 " \
           "seed 1" in text
    assert "AdvEnt" not in text.split("left out")[0].replace("MinEnt", "")  # a row without variants has no line


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.init_args.entropy_weight=0.01"], "add --validation-only"),
    (["--validation-only", "--set", "entropy_weight"], "expected KEY=VALUE"),
    (["--validation-only", "--set=--model.init_args.entropy_weight=0.01"], "expected KEY=VALUE"),
    (["--validation-only", "--rows", "background"], "the background row has no fit"),
])
def test_realism_gap_validation_arguments_are_checked_before_any_fit(argv, message, tmp_path, capsys):
    module = _realism_gap()
    with pytest.raises(SystemExit) as info:
        module.main([*argv, "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_realism_gap_config_fingerprint_follows_the_settings_not_the_comments(tmp_path, monkeypatch):
    module = _realism_gap()
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("fcn8s_rendered.yaml", "fcn8s_rendered_oracle.yaml", "advent_fcn8s_rendered.yaml",
                 "self_training_fcn8s_rendered.yaml"):
        (configs / name).write_text((REPO / "configs" / name).read_text())
    monkeypatch.setattr(module, "REPO", tmp_path)
    rows = ("source-only", "oracle", "background", "AdvEnt", "randomized + FDA + AdvEnt", "self-training",
            "randomized + FDA + AdvEnt + self-training")
    before = {name: module.config_fingerprint(name) for name in rows}
    assert len(set(before.values())) == len(before)  # extra arguments and derived rows count
    source = configs / "fcn8s_rendered.yaml"
    source.write_text("# a comment\n" + source.read_text())
    assert module.config_fingerprint("source-only") == before["source-only"]
    source.write_text(source.read_text().replace("lr: ", "lr: 2"))  # the learning rate changes
    assert module.config_fingerprint("source-only") != before["source-only"]
    assert module.config_fingerprint("background") != before["background"]  # derived from source-only's
    assert module.config_fingerprint("self-training") != before["self-training"]  # its teacher's training changed
    assert module.config_fingerprint("oracle") == before["oracle"]
    assert module.config_fingerprint("randomized + FDA + AdvEnt + self-training") == before[
        "randomized + FDA + AdvEnt + self-training"]
    self_training = module.config_fingerprint("self-training")
    advent = configs / "advent_fcn8s_rendered.yaml"
    advent.write_text(advent.read_text().replace("lr: ", "lr: 2"))  # the combination, its teacher, changes
    assert module.config_fingerprint("randomized + FDA + AdvEnt + self-training") != before[
        "randomized + FDA + AdvEnt + self-training"]
    assert module.config_fingerprint("self-training") == self_training


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generative_metrics_fails_when_it_has_nothing_to_measure(tmp_path, capsys):
    module = _script("generative_metrics")
    assert module.main(["--classifier", str(tmp_path / "missing.ckpt")]) == 1
    assert "no classifier checkpoint" in capsys.readouterr().err
    classifier = tmp_path / "classifier.ckpt"
    classifier.write_bytes(b"")  # present; no VAE / GAN checkpoint given or found at the defaults
    module.DEFAULTS = {str(tmp_path / "no_vae.ckpt"): "scarce fit --config configs/vae_mnist.yaml"}
    assert module.main(["--classifier", str(classifier)]) == 1
    assert "no VAE or GAN checkpoint to measure" in capsys.readouterr().err
