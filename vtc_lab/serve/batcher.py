"""The server's one model thread: requests from many HTTP clients batched into `generate` calls.

`Batcher` runs one worker thread that owns the model: it takes queued requests, groups those
with equal decoding settings, generates up to `max_batch_size` of them together and resolves each
caller's future. Each request keeps its own seed (the engine samples every row with its own
generator), so batching changes no sample. Other model work (scoring prompt logprobs) goes
through the same thread with `call`, so the model is never used by two threads at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import astuple, dataclass
from typing import Any

from vtc_lab.infer.engine import GenerationOutput, GenerationParams, HFEngine


@dataclass
class _Job:
    request: Any
    params: GenerationParams | None
    future: Future
    fn: Callable[[], Any] | None = None


class Batcher:
    """One worker thread, one model: queued requests -> batched `generate` calls."""

    def __init__(self, engine: HFEngine, max_batch_size: int, wait_s: float):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="vtc-serve-batcher", daemon=True)
        self.batches = 0
        self.rows = 0
        self._thread.start()

    def submit(self, request: Any, params: GenerationParams) -> Future:
        """Generate `request` (batched with others of equal `params`); the future's result is
        its `GenerationOutput`."""
        future: Future = Future()
        self._queue.put(_Job(request, params, future))
        return future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the model thread, between batches; the future's result is its value."""
        future: Future = Future()
        self._queue.put(_Job(None, None, future, fn))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        deadline = time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 \
                    else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # finish this batch, then stop
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            groups: dict[Any, list[_Job]] = {}
            for job in jobs:
                if job.fn is not None:
                    self._call(job)
                else:
                    groups.setdefault(astuple(job.params), []).append(job)
            for group in groups.values():
                self._generate(group)

    @staticmethod
    def _call(job: _Job) -> None:
        try:
            job.future.set_result(job.fn())
        except Exception as err:  # noqa: BLE001 - reported to the caller, the thread goes on
            job.future.set_exception(err)

    def _generate(self, group: list[_Job]) -> None:
        try:
            outputs: list[GenerationOutput] = self.engine.generate(
                [j.request for j in group], group[0].params)
        except Exception as err:  # noqa: BLE001 - one bad batch must not kill the server
            if len(group) > 1:  # isolate the culprit: the others still get their answer
                for job in group:
                    self._generate([job])
                return
            group[0].future.set_exception(err)
            return
        self.batches += 1
        self.rows += len(group)
        for job, out in zip(group, outputs):
            job.future.set_result(out)
