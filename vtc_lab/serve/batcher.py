"""The server side of generation: requests from many HTTP clients batched into `HFEngine` calls.

`ServingEngine` is the in-process `HFEngine` plus one thing a server needs: a request whose
prompt is token ids (the `/v1/completions` token-id prompt that continues an assistant turn),
encoded as-is instead of through the chat template. `Batcher` runs one worker thread that owns
the model: it takes queued requests, groups those with equal decoding settings, generates up to
`max_batch_size` of them together and resolves each caller's future. Each request keeps its
own seed (the engine samples every row with its own generator), so batching changes no sample.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import astuple, dataclass, field
from typing import Any

import torch

from vtc_lab.infer.engine import GenerationOutput, GenerationParams, GenerationRequest, HFEngine


@dataclass
class ServedRequest(GenerationRequest):
    """A `GenerationRequest` whose prompt may be raw token ids, and that records its prompt."""

    prompt_ids: list[int] | None = None
    """Token-id prompt (completions); None: `messages` through the chat template."""
    encoded_ids: list[int] = field(default_factory=list)
    """Filled by the engine: the ids the model saw (template + image placeholders + prefix)."""


class ServingEngine(HFEngine):
    """`HFEngine` that also accepts token-id prompts and reports each prompt's ids."""

    def encode(self, request: GenerationRequest) -> dict[str, torch.Tensor]:
        if isinstance(request, ServedRequest) and request.prompt_ids is not None:
            ids = torch.tensor([request.prompt_ids + list(request.prefix_ids)], dtype=torch.long)
            enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        else:
            enc = super().encode(request)
        if isinstance(request, ServedRequest):
            request.encoded_ids = enc["input_ids"][0].tolist()
        return enc

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


@dataclass
class _Job:
    request: ServedRequest
    params: GenerationParams
    future: Future


class Batcher:
    """One worker thread, one model: queued requests -> batched `generate` calls."""

    def __init__(self, engine: ServingEngine, max_batch_size: int = 8, wait_s: float = 0.005):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="vtc-serve-batcher", daemon=True)
        self.batches = 0
        self.rows = 0
        self._thread.start()

    def submit(self, request: ServedRequest, params: GenerationParams) -> Future:
        future: Future = Future()
        self._queue.put(_Job(request, params, future))
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
                groups.setdefault(astuple(job.params), []).append(job)
            for group in groups.values():
                self._generate(group)

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
