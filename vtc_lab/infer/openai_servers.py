"""Which OpenAI-compatible server a request goes to, and what happens when it fails.

`ServerPool.run(call)` calls `call(url)` on the least busy server (servers that just failed
last; ties rotate, so a retry moves to the next server); a transient failure (connection,
timeout, HTTP 408/409/429/5xx) is retried after an exponential backoff, a context-length refusal
becomes `ContextOverflowError` (that sample ends, the eval goes on), anything else ends the eval
as `EngineUnavailableError` naming the server. Torch-free, like the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.openai_answers import (ContextOverflowError, error_message,
                                          is_context_overflow, is_transient)

T = TypeVar("T")


class EngineUnavailableError(RuntimeError):
    """A server cannot be reached, does not serve the model, or lacks what the loop needs."""


class ServerPool:
    """The servers of one engine: requests in flight per server, and which ones just failed."""

    def __init__(self, urls: list[str], cfg: EngineConfig):
        self.urls = list(urls)
        self.cfg = cfg
        self._in_flight = {u: 0 for u in self.urls}
        self._down_until = {u: 0.0 for u in self.urls}
        self._next = 0
        self._lock = threading.Lock()

    def run(self, call: Callable[[str], T]) -> T:
        """`call(url)` on the least busy server; transient failures retried on the next one."""
        delay = self.cfg.retry_backoff_s
        for attempt in range(self.cfg.max_retries + 1):
            url = self._acquire()
            try:
                return call(url)
            except Exception as err:  # noqa: BLE001 - classified right below
                if is_transient(err):  # keep other requests off this server for a while
                    with self._lock:
                        self._down_until[url] = time.monotonic() + max(
                            delay * 2, self.cfg.retry_backoff_s, 1.0)
                if is_context_overflow(err):
                    raise ContextOverflowError(f"{url}: {error_message(err)}") from err
                if not is_transient(err):
                    raise EngineUnavailableError(
                        f"engine=openai: request to {url} failed: {error_message(err)}") from err
                if attempt == self.cfg.max_retries:
                    raise EngineUnavailableError(
                        f"engine=openai: giving up after {attempt + 1} attempts; last: {url}: "
                        f"{error_message(err)}") from err
            finally:
                self._release(url)
            time.sleep(delay)
            delay = min(max(delay * 2, 0.05), self.cfg.retry_backoff_max_s)
        raise AssertionError("unreachable")

    def _acquire(self) -> str:
        with self._lock:
            # Servers that just failed last, then least in flight; ties rotate, so a retry
            # moves to the next server.
            now = time.monotonic()
            order = self.urls[self._next:] + self.urls[:self._next]
            url = min(order, key=lambda u: (self._down_until[u] > now, self._in_flight[u]))
            self._next = (self.urls.index(url) + 1) % len(self.urls)
            self._in_flight[url] += 1
            return url

    def _release(self, url: str) -> None:
        with self._lock:
            self._in_flight[url] -= 1
