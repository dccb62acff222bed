"""What tests/test_ddp.py runs under torchrun, and the data and DataModules it runs on.

``torchrun ... tests/_ddp_checks.py PHASE DATA OUT`` on every rank:

- ``main`` (4 processes: two simulated nodes of 2): the streaming TFRecord dataset with DataLoader workers; every
  DataModule through a real ``Trainer.fit`` + ``test`` with :class:`Recorder`, which writes down the id of each
  sample it is given; ``validate`` / ``test`` of three real LightningModules; then a segmentation fit that
  checkpoints at step ``KILL_STEP`` and is SIGKILLed in the next step.
- ``resume`` (2 processes): that fit resumed from its ``last.ckpt`` with twice the batch size (the same global
  batch), to the end.

Each rank writes ``OUT/PHASE-rank{R}.json`` (and the fits ``OUT/steps-PHASE-rank{R}.jsonl``, one line per step, flushed,
so what a killed rank did survives it); the pytest side compares them with one process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

TRAIN_COUNTS = (1, 9, 0, 4, 7)  # records per training shard: uneven, an empty one, 21 in all (not a multiple of 4)
VAL_COUNTS = (5, 2)  # 7 validation records
GZIP_COUNT = 2  # one more training shard, GZIP-compressed (streaming only): 23 records then
RESUME_TRAIN = 26  # Cityscapes training images of the killed / resumed fit: 26 // 4 = 6 per rank, 2 left out
KILL_STEP = 2  # the killed fit writes last.ckpt after this step and dies in the next
BATCH = 2  # per process; the resumed fit on 2 processes uses 2 * BATCH
SEG_SIZE = (24, 40)


# ----------------------------------------------------------------------------------------------- data


def _jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_data(root: Path) -> None:
    """Everything the DataModules read, written once by the pytest side (indexes and caches included)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _segmentation_data import make_cityscapes, make_synthia

    from scarce.data.convert import convert_cityscapes
    from scarce.data.datasets.mnistm import MNISTM
    from scarce.shards.readers import TFRecordDataset
    from scarce.shards.writer import TFRecordWriter

    rng, ident = np.random.default_rng(0), 0
    shards = [(f"train-{k:05d}.tfrecord", n, None) for k, n in enumerate(TRAIN_COUNTS)]
    shards += [("train-gzip.tfrecord.gz", GZIP_COUNT, "gzip")]
    shards += [(f"val-{k:05d}.tfrecord", n, None) for k, n in enumerate(VAL_COUNTS)]
    for name, count, compression in shards:  # ids 0..22 are the training records
        with TFRecordWriter(root / "records" / name, compression, index=compression is None) as writer:
            for _ in range(count):
                writer.write({"image": _jpeg(rng), "label": ident})  # the label is the record's id
                ident += 1
    TFRecordDataset(str(root / "records" / "*.tfrecord"))  # checks every index once, before four processes do
    make_cityscapes(root / "cityscapes", per_split=RESUME_TRAIN // 2, splits=("train",))
    make_cityscapes(root / "cityscapes", per_split=3, splits=("val",), cities=("aachen", "bonn", "koeln"))
    make_synthia(root / "synthia", rand_frames=12, seqs_frames=6)  # 20 train, 4 val
    convert_cityscapes(str(root / "cityscapes"), str(root / "city_shards"), 4, None)
    for split, limit in (("train", 30), ("val", 19), ("test", 19)):  # the MNIST-M cache, built once
        MNISTM(split=split, cache_dir=str(root / "cache"), limit=limit)


# ----------------------------------------------------------------------------------------------- DataModules


def datamodules(root: Path) -> dict:
    """name -> (DataModule factory, how a sample is identified: ``name``, ``label`` (a record id) or ``hash``)."""
    from scarce.datamodules.domain_adaptation import BlobsDataModule, DigitsDataModule
    from scarce.datamodules.mnist import MNISTDataModule
    from scarce.datamodules.segmentation import SegmentationDataModule, SegmentationSource
    from scarce.datamodules.tfrecord import TFRecordDataModule

    records = root / "records"

    def tfrecords(streaming: bool):
        return TFRecordDataModule(train=str(records / ("train-*" if streaming else "train-*.tfrecord")),
                                  val=str(records / "val-*"), test=str(records / "val-*"),
                                  features={"image": "jpeg", "label": "int"}, size=(8, 8), augment=False,
                                  batch_size=BATCH, num_workers=2, streaming=streaming, shuffle_buffer=4)

    def folders():
        return SegmentationDataModule(SegmentationSource("cityscapes", str(root / "cityscapes")),
                                      SegmentationSource("synthia", str(root / "synthia")), size=SEG_SIZE,
                                      augment=False, batch_size=BATCH, paired_target=True)

    def shards_and_rendered():
        return SegmentationDataModule(SegmentationSource("shards", str(root / "city_shards")),
                                      SegmentationSource("rendered", num_train=10, num_val=7), size=(16, 16),
                                      augment=False, batch_size=BATCH)

    return {
        "tfrecord_streaming": (lambda: tfrecords(True), "label"),
        "tfrecord_indexed": (lambda: tfrecords(False), "label"),
        "segmentation_cityscapes_synthia_paired": (folders, "name"),
        "segmentation_shards_rendered": (shards_and_rendered, "name"),
        "mnist": (lambda: MNISTDataModule(batch_size=4, limit_train=42, limit_val=23, limit_test=23), "hash"),
        "digits": (lambda: DigitsDataModule(cache_dir=str(root / "cache"), limit_train=30, limit_eval=19,
                                            batch_size=4), "hash"),
        "blobs": (lambda: BlobsDataModule(batch_size=32), "hash"),
    }


def sample_ids(batch: dict, kind: str) -> list[str]:
    """The id of every sample of a collated batch."""
    if kind == "name":
        return [str(n) for n in batch["name"]]
    if kind == "label":
        return [str(int(v)) for v in batch["label"]]
    images = batch["image"].detach().cpu().contiguous()
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest()[:16] for img in images]


def _recorder_class():
    from lightning.pytorch import LightningModule

    class Recorder(LightningModule):
        """Writes down the id of every sample of every batch; a zero loss on one weight keeps DDP running."""

        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind, self.weight = kind, torch.nn.Parameter(torch.zeros(()))
            self.seen: dict[str, list[str]] = {}

        def _note(self, key: str, batch: dict) -> None:
            self.seen.setdefault(key, []).extend(sample_ids(batch, self.kind))

        def training_step(self, batch, batch_idx):
            for domain, part in (batch.items() if "source" in batch else [("source", batch)]):
                self._note(f"train/{self.current_epoch}/{domain}", part)
            return self.weight * 0.0

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self._note(f"val/{self.current_epoch}/{dataloader_idx}", batch)

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self._note(f"test/{dataloader_idx}", batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Recorder


# ----------------------------------------------------------------------------------------------- models


def metric_runs(root: Path) -> dict:
    """name -> (model factory, DataModule factory): the modules whose ``val/*`` and ``test/*`` are compared.

    One sample per evaluation batch, here and in the one-process run: a kernel's float rounding depends on the batch
    it runs in, which could flip the argmax of a near-tie (the closest top-2 logits here are 2e-5 apart) and so a
    count. With one sample per batch both runs do the same arithmetic per sample, and any difference in the counts
    is a sample seen twice or not at all. The ranks still see different numbers of samples (23 = 6 + 6 + 6 + 5).
    """
    from scarce.datamodules.domain_adaptation import BlobsDataModule
    from scarce.datamodules.mnist import MNISTDataModule
    from scarce.datamodules.segmentation import SegmentationDataModule, SegmentationSource
    from scarce.lightning_modules.classifier import MNISTClassifierModule
    from scarce.lightning_modules.dann import DANN
    from scarce.lightning_modules.segmentation import Segmentation

    def seeded(make):
        def build():
            torch.manual_seed(0)  # the same initial weights in every process and in the one-process run
            return make()
        return build

    return {
        "segmentation": (seeded(lambda: Segmentation(width_divisor=32, dropout=0.0)),
                         lambda: SegmentationDataModule(SegmentationSource("shards", str(root / "city_shards")),
                                                        SegmentationSource("synthia", str(root / "synthia")),
                                                        size=SEG_SIZE, augment=False, batch_size=1)),
        "dann_blobs": (seeded(lambda: DANN(network="blobs", num_classes=2)), lambda: BlobsDataModule(batch_size=1)),
        "mnist_classifier": (seeded(lambda: MNISTClassifierModule(num_features=16)),
                             lambda: MNISTDataModule(batch_size=1, limit_val=23, limit_test=23)),
    }


def resume_fit_parts(root: Path, batch_size: int, world: int):
    """The model and DataModule of the killed / resumed fit (segmentation on Cityscapes folders, no target)."""
    from scarce.datamodules.segmentation import SegmentationDataModule, SegmentationSource
    from scarce.lightning_modules.segmentation import Segmentation

    torch.manual_seed(0)
    model = Segmentation(width_divisor=32, dropout=0.0)
    data = SegmentationDataModule(SegmentationSource("cityscapes", str(root / "cityscapes")), size=SEG_SIZE,
                                  augment=False, batch_size=batch_size)
    return model, data


def step_logger(path: Path, kill_at: int | None):
    """A callback appending ``{"epoch", "step", "ids"}`` per training step to ``path`` (flushed), and SIGKILLing
    this process at the start of the step after ``kill_at``, once ``last.ckpt`` of step ``kill_at`` is written."""
    from lightning.pytorch import Callback

    class StepLog(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if kill_at is not None and trainer.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            with open(path, "a") as f:
                f.write(json.dumps({"epoch": trainer.current_epoch, "step": trainer.global_step,
                                    "ids": sample_ids(batch, "name")}) + "\n")

    return StepLog()


# ----------------------------------------------------------------------------------------------- phases


def _trainer(**kwargs):
    from lightning.pytorch import Trainer

    nodes = int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"])
    options = dict(accelerator="cpu", devices=int(os.environ["LOCAL_WORLD_SIZE"]), num_nodes=nodes, strategy="ddp",
                   logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   num_sanity_val_steps=0)
    return Trainer(**{**options, **kwargs})


def _streaming_dataset(root: Path, rank: int, world: int) -> dict:
    """The streaming dataset straight through a DataLoader with 2 workers (no Lightning): ids per epoch, and the
    batches read next to ``len(loader)``."""
    from scarce.shards.readers import StreamingTFRecordDataset

    seen = {}
    for even in (False, True):
        ds = StreamingTFRecordDataset(str(root / "records" / "train-*"), decode={"label": "int"}, shuffle=True,
                                      buffer_size=3, seed=1, rank=rank, world_size=world, even_ranks=even,
                                      batch_size=BATCH)
        ds.counts  # noqa: B018  (counted here, before the workers start)
        loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=2)
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            batches = list(loader)
            seen[f"even={even}/{epoch}"] = [str(int(v)) for b in batches for v in b["label"]]
            seen[f"even={even}/{epoch}/batches"] = [len(batches), len(loader)]
    return seen


def main_phase(root: Path, out: Path, rank: int, world: int) -> None:
    result: dict = {"streaming_dataset": _streaming_dataset(root, rank, world), "datamodules": {}, "metrics": {}}
    Recorder = _recorder_class()
    for name, (make, kind) in datamodules(root).items():
        recorder, trainer = Recorder(kind), _trainer(max_epochs=2)
        data = make()
        trainer.fit(recorder, datamodule=data)
        trainer.test(recorder, datamodule=data, verbose=False)
        result["datamodules"][name] = recorder.seen
    for name, (make_model, make_data) in metric_runs(root).items():
        model, data, trainer = make_model(), make_data(), _trainer()
        validated = trainer.validate(model, datamodule=data, verbose=False)
        tested = trainer.test(model, datamodule=data, verbose=False)
        result["metrics"][name] = {k: float(v) for d in validated + tested for k, v in d.items()}
    (out / f"main-rank{rank}.json").write_text(json.dumps(result))
    _killed_fit(root, out, rank)


def _killed_fit(root: Path, out: Path, rank: int) -> None:
    from scarce.callbacks.resume import ResumeCheckpoint

    model, data = resume_fit_parts(root, BATCH, int(os.environ["WORLD_SIZE"]))
    trainer = _trainer(max_epochs=2, enable_checkpointing=True, limit_val_batches=0, default_root_dir=out / "fit",
                       callbacks=[step_logger(out / f"steps-main-rank{rank}.jsonl", KILL_STEP),
                                  ResumeCheckpoint(str(out / "fit" / "checkpoints"), every_n_batches=KILL_STEP)])
    trainer.fit(model, datamodule=data)
    raise SystemExit(f"rank {rank}: the fit was to be killed at step {KILL_STEP + 1}, but it ended")


def resume_phase(root: Path, out: Path, rank: int, world: int) -> None:
    from scarce.callbacks.resume import ResumeCheckpoint

    model, data = resume_fit_parts(root, BATCH * 4 // world, world)
    trainer = _trainer(max_epochs=2, enable_checkpointing=True, limit_val_batches=0, default_root_dir=out / "fit",
                       callbacks=[step_logger(out / f"steps-resume-rank{rank}.jsonl", None),
                                  ResumeCheckpoint(str(out / "fit" / "checkpoints"), every_n_batches=100)])
    trainer.fit(model, datamodule=data, ckpt_path=str(out / "fit" / "checkpoints" / "last.ckpt"))
    (out / f"resume-rank{rank}.json").write_text(json.dumps({"global_step": trainer.global_step,
                                                             "epoch": trainer.current_epoch}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    phase, data_dir, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    global_rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    {"main": main_phase, "resume": resume_phase}[phase](data_dir, out_dir, global_rank, world_size)
