"""A tracking outage never stops or stalls a job: bounded requests, then degraded mode, then resync.

MLflow's REST client retries a dead server 7 times with exponential backoff and a 120 s timeout
per request, so one `log_batch` per training step stalled a run for many minutes and finally
killed it. Here every write of a `RunHandle` goes through an `Outbox`:

- requests are bounded (`bound_http_requests`: a few retries, seconds not minutes);
- the first write that fails with an outage (connection refused, timeout, HTTP 5xx, a locked or
  full sqlite store) switches the run to *degraded*: one loud line on stderr, and from then on
  writes are not attempted but appended to `<spool>/pending.jsonl` (files to upload are copied
  into the spool), so the job continues at full speed and nothing is lost even if it is killed;
- every `retry_after_s` one cheap probe (`/health`, 2 s) asks whether the store is back; when it
  is, everything pending is sent in order (metric points keep their original timestamps and
  steps), the run gets a `vtc.tracking_gap` tag saying what was resent, and the spool is emptied;
- what is still pending when the job ends stays in the spool: it is sent when the run is
  resumed (`open_run` with `resume_run_id`), or by hand with
  `python -m vtc_lab.tracking.resync <spool dir>`.

Errors that are not outages (a rejected parameter value, a bug) still raise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

PENDING = "pending.jsonl"
# MLflow error codes that mean "the store is not answering", as opposed to "the request is wrong"
_OUTAGE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                 "DEADLINE_EXCEEDED", "ABORTED", "UNKNOWN"}

# bounded MLflow HTTP requests (environment defaults; a user's own setting wins)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def bound_http_requests() -> None:
    """Cap MLflow's per-request retries and timeout (a dead server then costs seconds, not 17
    minutes). Applied process-wide through MLflow's own environment settings, read per request;
    values the user set are kept."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_outage(exc: BaseException) -> bool:
    """True for failures of the store itself (unreachable, timing out, 5xx, sqlite locked or
    out of space), False for a request the store rejected or a bug."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a core dependency
        MlflowException = ()  # type: ignore[assignment]
    if isinstance(exc, MlflowException):
        return getattr(exc, "error_code", "INTERNAL_ERROR") in _OUTAGE_CODES
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    return type(exc).__module__.split(".")[0] in {"requests", "urllib3", "sqlalchemy"}


def store_answers(uri: str, timeout_s: float = 2.0) -> bool:
    """The cheap probe: an http(s) server's `/health`; other stores are simply tried again."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:  # noqa: S310
            return resp.status < 400
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return False


def _say(text: str) -> None:
    log.warning(text)
    print(f"[vtc-lab] {text}", file=sys.stderr, flush=True)


class Outbox:
    """Delivers a run's writes (`op` dicts) through `send`, or spools them during an outage."""

    def __init__(self, run_id: str, uri: str, send: Callable[[dict], None],
                 spool_dir: Path, retry_after_s: float = 30.0):
        self.run_id, self.uri, self.send = run_id, uri, send
        self.spool_dir = Path(spool_dir)
        self.retry_after_s = retry_after_s
        self.down_since: Optional[float] = None
        self._next_probe = 0.0
        self.queued = 0
        self.resent = 0

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    # -- delivery ----------------------------------------------------------------------------
    def deliver(self, op: dict) -> None:
        if self.degraded and not self._recovered():
            self._queue(op)
            return
        try:
            self.send(op)
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_outage(exc):
                raise
            self.enter_degraded(exc)
            self._queue(op)

    def stage_file(self, make: Callable[[Path], None], name: str) -> Path:
        """A file for an in-memory artifact (dict, text, image, table) made only while degraded:
        written into the spool so it survives until the resync."""
        target = self.spool_dir / "files" / uuid.uuid4().hex / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        make(target)
        return target

    def enter_degraded(self, exc: BaseException) -> None:
        """Switch to spooling, once, with one loud line naming the store and the spool."""
        if self.degraded:
            return
        self.down_since = time.time()
        self._next_probe = time.monotonic() + self.retry_after_s
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        _say(f"tracking degraded: the MLflow store {self.uri} failed ({reason}). The job "
             f"continues (training and checkpoints are unaffected); what cannot be sent to run "
             f"{self.run_id} is kept in {self.spool_dir} and sent when the store answers again "
             f"(checked every {self.retry_after_s:g} s).")

    def _queue(self, op: dict) -> None:
        if op.get("op") == "artifact" and not self._in_spool(op["path"]):
            # a file the job may delete or rewrite later: keep today's content
            src = Path(op["path"])
            dest = self.spool_dir / "files" / uuid.uuid4().hex / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
            op = {**op, "path": str(dest)}
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spool_dir / PENDING, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**op, "run_id": self.run_id, "uri": self.uri}) + "\n")
        self.queued += 1

    def _in_spool(self, path: str) -> bool:
        try:
            Path(path).resolve().relative_to(self.spool_dir.resolve())
            return True
        except ValueError:
            return False

    def _recovered(self) -> bool:
        """Probe (at most every `retry_after_s`); when the store answers, resend the spool."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + self.retry_after_s
        if not store_answers(self.uri):
            return False
        try:
            sent = flush(self.spool_dir, self.send)
        except Exception as exc:  # noqa: BLE001
            if not is_outage(exc):
                raise
            return False
        gap = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(self.down_since))} .. " \
              f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {sent} writes resent from the spool"
        self.down_since = None
        self.resent += sent
        try:
            self.send({"op": "tags", "items": {"vtc.tracking_gap": gap}})
        except Exception:  # noqa: BLE001 - the data is resent; the note is a courtesy
            pass
        _say(f"tracking restored: {self.uri} answers again; {sent} writes of run {self.run_id} "
             f"resent ({gap})")
        return True

    def close(self) -> None:
        """At the end of the run: one last chance to resend; else say where the data waits."""
        if not self.degraded:
            return
        self._next_probe = 0.0
        if self._recovered():
            return
        _say(f"tracking still down at the end of run {self.run_id}: {self.queued} writes "
             f"(metrics, params, tags, files, final status) are kept in {self.spool_dir}. They "
             f"are sent when this run is resumed, or now with: "
             f"python -m vtc_lab.tracking.resync {self.spool_dir}")


def pending_ops(spool_dir: Path) -> list[dict]:
    path = Path(spool_dir) / PENDING
    if not path.is_file():
        return []
    ops = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ops.append(json.loads(line))
        except ValueError:  # a torn last line of a killed job: that write is lost, not the rest
            continue
    return ops


def flush(spool_dir: Path, send: Callable[[dict], None]) -> int:
    """Send every pending op of `spool_dir` in order; the spool is removed only when all went
    through (an outage part-way leaves the rest, rewritten, for the next attempt)."""
    ops = pending_ops(spool_dir)
    for i, op in enumerate(ops):
        try:
            send(op)
        except Exception:
            rest = Path(spool_dir) / (PENDING + ".tmp")
            rest.write_text("".join(json.dumps(o) + "\n" for o in ops[i:]), encoding="utf-8")
            os.replace(rest, Path(spool_dir) / PENDING)
            raise
    if ops:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return len(ops)
