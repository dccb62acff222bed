"""Overlap host-to-device copies with compute: :class:`CudaPrefetcher` (for plain loops over any loader)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

__all__ = ["CudaPrefetcher"]


class CudaPrefetcher:
    """Iterate a loader while copying the next batch to ``device`` on a side CUDA stream.

    The copy of batch ``i + 1`` (from pinned memory, ``non_blocking``) overlaps the work on batch ``i``.
    On a CPU device it just moves batches.
    """

    def __init__(self, loader: Iterable[Any], device: str | torch.device = "cuda") -> None:
        self.loader, self.device = loader, torch.device(device)

    def _to(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self._to(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to(v) for v in batch)
        return batch

    def __iter__(self) -> Iterator[Any]:
        if self.device.type != "cuda":
            yield from (self._to(b) for b in self.loader)
            return
        stream = torch.cuda.Stream(self.device)
        it = iter(self.loader)
        nxt = None
        try:
            with torch.cuda.stream(stream):
                nxt = self._to(next(it))
        except StopIteration:
            return
        while nxt is not None:
            torch.cuda.current_stream(self.device).wait_stream(stream)
            current = nxt
            try:
                with torch.cuda.stream(stream):
                    nxt = self._to(next(it))
            except StopIteration:
                nxt = None
            yield current

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]
