"""DDP exactness on CPU (issue 15): two simulated nodes x 2 gloo processes under torchrun, against one process.

Two torchrun launches for the whole module (each process imports Lightning once, which dominates on 2 cores):
``main`` on ``--nnodes 2 --nproc-per-node 2`` (node ranks 0 and 1 started as two launchers on localhost) and
``resume`` on one node of 2 processes; tests/_ddp_checks.py is what every rank runs, and it writes what each rank
saw. The tests here compare that with the same DataModules, models and fit in this one process:

- every record or sample is seen exactly once per epoch across ranks x workers (validation and test: all of them;
  training: all but the remainder each rank's full batches leave, the same count as on one process);
- ``val/*`` and ``test/*`` of the 4 processes equal those of 1 (accuracy and confusion-matrix mIoU exactly, losses,
  which are means, to 1e-5 relative: float32 sums added in another order);
- a fit SIGKILLed after its step-2 checkpoint and resumed on 2 processes (twice the batch, the same global batch)
  ends with the uninterrupted run's optimizer steps and samples, each seen once per epoch, and one checkpoint file.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

import _ddp_checks as checks

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("_ddp_checks.py")
SRC = Path(__file__).resolve().parents[1] / "src"
WORLD = 4  # the main launch: 2 nodes x 2 processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(phase: str, nnodes: int, nproc: int, data: Path, out: Path, timeout: float = 400) -> list[tuple]:
    """Start one torchrun launcher per node rank (static rendezvous on localhost); ``[(status, output)]``."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYOPENGL_PLATFORM": "egl",
           "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), str(WORKER.parent), os.environ.get("PYTHONPATH"))
                                         if p)}
    procs = [subprocess.Popen([str(TORCHRUN), f"--nnodes={nnodes}", f"--nproc-per-node={nproc}",
                               f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}",
                               str(WORKER), phase, str(data), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
             for node in range(nnodes)]
    results = []
    try:
        for proc in procs:
            output, _ = proc.communicate(timeout=timeout)
            results.append((proc.returncode, output))
    finally:
        for proc in procs:  # a hung launch: end the launchers we started and their workers (own sessions)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return results


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The data, both launches, and what they left: per-rank JSON, step logs, the checkpoint folder."""
    root = tmp_path_factory.mktemp("ddp")
    data, out = root / "data", root / "out"
    out.mkdir()
    checks.make_data(data)
    main = _torchrun("main", 2, 2, data, out)
    outputs = "\n".join(o for _, o in main)
    ranks = [out / f"main-rank{r}.json" for r in range(WORLD)]
    assert all(p.is_file() for p in ranks), outputs[-6000:]
    # The main launch ends with every rank SIGKILLing itself in the step after the checkpoint: the launchers fail.
    assert all(status != 0 for status, _ in main) and "Signal 9 (SIGKILL)" in outputs, outputs[-6000:]
    checkpoints = out / "fit" / "checkpoints"
    killed = {"files": sorted(os.listdir(checkpoints)), "root": sorted(os.listdir(out / "fit")),
              "step": torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"]}
    resume = _torchrun("resume", 1, 2, data, out)
    assert resume[0][0] == 0, resume[0][1][-6000:]
    return {"data": data, "out": out, "killed": killed, "main": [json.loads(p.read_text()) for p in ranks],
            "final_files": sorted(os.listdir(checkpoints))}


# ----------------------------------------------------------------------------------------------- datasets


def test_streaming_dataset_reads_each_record_once_over_ranks_and_workers(run):
    total = sum(checks.TRAIN_COUNTS) + checks.GZIP_COUNT  # 23: uneven shards, an empty one, a GZIP one
    for even in (False, True):
        orders = []
        for epoch in (0, 1):
            per_rank = [r["streaming_dataset"][f"even={even}/{epoch}"] for r in run["main"]]
            seen = [i for ids in per_rank for i in ids]
            assert len(seen) == len(set(seen)), f"even_ranks={even}, epoch {epoch}: a record read twice"
            assert set(seen) <= {str(i) for i in range(total)}
            # Every record once; with even_ranks the last 23 % 4 = 3 of the epoch's order are left out.
            assert len(seen) == (total - total % WORLD if even else total)
            if even:
                assert {len(ids) for ids in per_rank} == {total // WORLD}
            for r in run["main"]:  # workers read whole batches: len(loader) is what the loader yields
                read, promised = r["streaming_dataset"][f"even={even}/{epoch}/batches"]
                assert read == promised
            orders.append(per_rank)
        assert orders[0] != orders[1], "the shuffled order did not change between epochs"


def _reference_datasets(data) -> dict:
    """Loader key (as the Recorder names them) -> the dataset behind it, read here in one process."""
    d = data.datasets
    if "source_train" not in d:  # TFRecordDataModule, MNISTDataModule
        return {"train/source": d["train"], "val/0": d["val"], "test/0": d["test"]}
    keys = {"train/source": d["source_train"], "train/target": d.get("target_train"), "val/0": d["source_val"],
            "val/1": d.get("target_val")}
    if "source_test" in d and "target_test" in d:  # domain adaptation: both domains are tested
        keys.update({"test/0": d["source_test"], "test/1": d["target_test"]})
    else:  # segmentation: the target's test split when there is a target
        keys["test/0"] = d[f"{data.domains[-1]}_test"]
    return {k: v for k, v in keys.items() if v is not None}


def _reference_ids(dataset, kind: str) -> list[str]:
    samples = iter(dataset) if isinstance(dataset, torch.utils.data.IterableDataset) else \
        (dataset[i] for i in range(len(dataset)))
    return [checks.sample_ids(default_collate([s]), kind)[0] for s in samples]


@pytest.mark.parametrize("name", list(checks.datamodules(Path("."))))
def test_every_datamodule_sees_each_sample_once(run, name):
    make, kind = checks.datamodules(run["data"])[name]
    data = make()
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    reference = {k: _reference_ids(ds, kind) for k, ds in _reference_datasets(data).items()}
    batch = data.hparams.batch_size
    seen = [r["datamodules"][name] for r in run["main"]]
    keys = set(seen[0])
    assert all(set(s) == keys for s in seen)
    # Evaluation: every sample exactly once over the ranks (none repeated to even the ranks out).
    for key in sorted(k for k in keys if not k.startswith("train/")):
        loader = key.split("/")[-1]
        counts = collections.Counter(i for s in seen for i in s[key])
        assert counts == collections.Counter(reference[f"{key.split('/')[0]}/{loader}"]), f"{name} {key}"
    # Training: per epoch and domain, no sample twice; each rank's full batches, the same count on every rank.
    lengths = {d: (len(reference[f"train/{d}"]) // WORLD) // batch for d in ("source", "target")
               if f"train/{d}" in reference}
    for key in sorted(k for k in keys if k.startswith("train/")):
        domain = key.split("/")[2]
        per_pass = lengths[domain] * batch  # per rank; a shorter domain restarts (max_size_cycle) after a pass
        epoch_batches = max(lengths.values())
        assert {len(s[key]) for s in seen} == {epoch_batches * batch}, f"{name} {key}: ranks saw different counts"
        for start in range(0, epoch_batches * batch, per_pass):
            ids = [i for s in seen for i in s[key][start:start + per_pass]]
            assert len(ids) == len(set(ids)), f"{name} {key}: a sample seen twice in one pass"
            assert set(ids) <= set(reference[f"train/{domain}"])
            if start + per_pass <= epoch_batches * batch:
                assert len(ids) == WORLD * per_pass
        if key.endswith("source") and key.startswith("train/1"):
            assert seen[0][key] != seen[0][key.replace("train/1", "train/0")], f"{name}: the same order twice"


# ----------------------------------------------------------------------------------------------- metrics


EXACT = ("acc", "miou")  # accuracy and confusion-matrix mIoU (and the mIoU gap) are sums of counts


@pytest.mark.parametrize("name", list(checks.metric_runs(Path("."))))
def test_metrics_of_four_processes_equal_one_process(run, name, one_torch_thread):
    from lightning.pytorch import Trainer

    make_model, make_data = checks.metric_runs(run["data"])[name]
    model, data = make_model(), make_data()
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    results = trainer.validate(model, datamodule=data, verbose=False) + trainer.test(model, datamodule=data,
                                                                                      verbose=False)
    one = {k: float(v) for d in results for k, v in d.items()}
    ranks = [r["metrics"][name] for r in run["main"]]
    assert all(r == ranks[0] for r in ranks), "the ranks logged different values"
    four = ranks[0]
    assert set(four) == set(one) and any(k.startswith("test/") for k in one)
    for key, value in one.items():
        if any(word in key for word in EXACT):
            assert four[key] == value, f"{name} {key}: 4 processes {four[key]!r}, 1 process {value!r}"
        else:
            assert four[key] == pytest.approx(value, rel=1e-5), f"{name} {key}"


# ----------------------------------------------------------------------------------------------- resume


def _steps(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_killed_fit_resumes_on_two_processes_with_the_same_steps_and_samples(run, tmp_path, one_torch_thread):
    from lightning.pytorch import Trainer

    out = run["out"]
    # The uninterrupted fit, in this process: one rank with the global batch, 4 x 2 = 2 x 4 = 8.
    model, data = checks.resume_fit_parts(run["data"], 8, 1)
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_val_batches=0, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      callbacks=[checks.step_logger(tmp_path / "steps.jsonl", None)])
    trainer.fit(model, datamodule=data)
    reference = collections.defaultdict(list)
    for line in _steps(tmp_path / "steps.jsonl"):
        reference[line["epoch"]] += line["ids"]
    # One checkpoint file, written by global rank 0 only, before and after the resume.
    assert run["killed"] == {"files": ["last.ckpt"], "root": ["checkpoints"], "step": checks.KILL_STEP}
    assert run["final_files"] == ["last.ckpt"]
    killed = [_steps(out / f"steps-main-rank{r}.jsonl") for r in range(WORLD)]
    assert all([s["step"] for s in steps] == list(range(1, checks.KILL_STEP + 1)) for steps in killed)
    resumed = [_steps(out / f"steps-resume-rank{r}.jsonl") for r in range(2)]
    final = [json.loads((out / f"resume-rank{r}.json").read_text()) for r in range(2)]
    assert {f["global_step"] for f in final} == {trainer.global_step} == {resumed[0][-1]["step"]}
    seen = collections.defaultdict(list)
    for line in [s for steps in killed + resumed for s in steps]:
        seen[line["epoch"]] += line["ids"]
    for epoch, ids in reference.items():
        assert len(seen[epoch]) == len(set(seen[epoch])), f"epoch {epoch}: a sample seen twice"
        assert sorted(seen[epoch]) == sorted(ids), f"epoch {epoch}: other samples than the uninterrupted fit"
    assert sum(map(len, seen.values())) == sum(map(len, reference.values()))


def test_resume_position_is_counted_in_samples_of_the_saved_world():
    """A checkpoint of 4 ranks x batch 2 after 2 steps consumed the first 16 samples of the epoch's permutation: a
    resume with another world and batch size (here 1 x 3) starts at sample 16, whatever its own sizes."""
    from scarce.datamodules.mnist import MNISTDataModule

    data = MNISTDataModule(batch_size=3, limit_train=26)
    data.setup("fit")
    data.load_state_dict({"epoch": 0, "batches": 2, "world_size": 4, "batch_size": 2})
    loader = data.train_dataloader()
    order = loader.sampler.permutation(epoch=0).tolist()
    assert len(loader) == 26 // 3  # a full pass (8 batches): Lightning's 2 restored + the 3 left end it earlier
    assert list(loader.sampler) == order[16:]
