"""Dynamic batching: one worker thread owns the model, waits for a first request, gathers what else arrives within
`max_delay` (up to `max_images`), runs one forward pass and hands each request its rows; `max_images=1` turns it off.
Eval-mode batch norm treats every image alone, so a batched answer is the unbatched one."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]  # uint8 images N x 3 x 32 x 32 -> probabilities N x 10


@dataclass
class _Job:
    images: torch.Tensor
    done: Future = field(default_factory=Future)


class Batcher:
    """Gathers concurrent requests' images into forward passes of at most `max_images` (see the module text)."""

    def __init__(self, forward: Forward, lock: threading.Lock, max_images: int = 64, max_delay: float = 0.005):
        self.forward, self.lock = forward, lock
        self.max_images, self.max_delay = max(1, max_images), max(0.0, max_delay)
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches = 0  # forward passes run (for the health page and the tests)
        self._worker = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._worker.start()

    def submit(self, images: torch.Tensor) -> Future:
        """A future of the probabilities (N x classes) of these N uint8 images."""
        job = _Job(images)
        self.jobs.put(job)
        return job.done

    def close(self) -> None:
        self.jobs.put(None)
        self._worker.join(timeout=5)

    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """`first` and the jobs that arrive within max_delay while the batch has room; the job that did not fit (it
        starts the next batch) or None."""
        jobs, count = [first], len(first.images)
        deadline = time.monotonic() + self.max_delay
        while count < self.max_images:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # close() after this batch
                break
            if count + len(job.images) > self.max_images:
                return jobs, job
            jobs.append(job)
            count += len(job.images)
        return jobs, None

    def _run(self) -> None:
        waiting: _Job | None = None
        while True:
            first = waiting or self.jobs.get()
            if first is None:
                return
            jobs, waiting = self._gather(first) if self.max_images > 1 else ([first], None)
            try:
                with self.lock:
                    probabilities = self.forward(torch.cat([job.images for job in jobs]))
                self.batches += 1
            except BaseException as error:  # every waiting request gets the error, and the worker goes on
                for job in jobs:
                    job.done.set_exception(error)
                continue
            for job, rows in zip(jobs, probabilities.split([len(job.images) for job in jobs]), strict=True):
                job.done.set_result(rows)
