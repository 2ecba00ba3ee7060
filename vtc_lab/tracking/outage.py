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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

PENDING = "pending.jsonl"
QUARANTINE = "quarantine.jsonl"
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
            flushed = flush(self.spool_dir, self.send)
        except Exception as exc:  # noqa: BLE001
            if not is_outage(exc):
                raise
            return False
        sent = flushed.sent
        if flushed.quarantined:
            _say(f"{len(flushed.quarantined)} spooled writes of run {self.run_id} could not be "
                 f"sent and are kept in {self.spool_dir / QUARANTINE} ("
                 + "; ".join(f"line {n}: {why}" for n, why in flushed.quarantined[:3]) + ")")
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


class SpoolError(ValueError):
    """A spool file that holds no tracking write at all (not a spool, or binary garbage)."""


@dataclass
class Flushed:
    """What one `flush` did: writes sent, and writes kept in the quarantine file beside the
    spool because they could not be read or the store rejected them (line number, reason)."""

    sent: int = 0
    quarantined: list[tuple[int, str]] = field(default_factory=list)


def _read_spool(path: Path) -> tuple[list[tuple[int, bytes, dict]], list[tuple[int, bytes, str]]]:
    """(good, bad) lines of a pending file: (line number, raw bytes, op) and (line number, raw
    bytes, why). Read as bytes, line by line, so one damaged line costs only itself."""
    good: list[tuple[int, bytes, dict]] = []
    bad: list[tuple[int, bytes, str]] = []
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        if not raw.strip():
            continue
        try:
            op = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append((number, raw, "not UTF-8 text"))
            continue
        except ValueError as exc:
            bad.append((number, raw, f"not a JSON line ({exc})"))
            continue
        if not (isinstance(op, dict) and all(isinstance(op.get(k), str)
                                              for k in ("op", "run_id", "uri"))):
            bad.append((number, raw, "not a tracking write (no op, run_id and uri)"))
            continue
        good.append((number, raw, op))
    return good, bad


def pending_ops(spool_dir: Path) -> list[dict]:
    """The readable writes waiting in `spool_dir` (damaged lines left out: `flush` keeps them)."""
    path = Path(spool_dir) / PENDING
    return [op for _, _, op in _read_spool(path)[0]] if path.is_file() else []


def flush(spool_dir: Path, send: Callable[[dict], None]) -> Flushed:
    """Send every pending op of `spool_dir` in order, never dropping one.

    A line that cannot be read, or a write the store rejects (an error that is not an outage),
    is moved verbatim to `QUARANTINE` beside the pending file (fix it, rename the file back to
    `PENDING` and resync again) and the rest goes on. An outage part-way stops: the writes not
    yet sent stay pending, verbatim, and the outage error is raised. The spool directory is
    removed only when everything in it arrived. A pending file with no readable line at all is
    refused untouched (`SpoolError`)."""
    spool_dir = Path(spool_dir)
    path = spool_dir / PENDING
    if not path.is_file():
        return Flushed()
    good, bad = _read_spool(path)
    if bad and not good:
        raise SpoolError(f"{path} is not a tracking spool: no line of it is a tracking write "
                         f"(line {bad[0][0]}: {bad[0][2]}); nothing was sent or changed")
    kept = [(number, raw) for number, raw, _ in bad]
    done = Flushed(quarantined=[(number, why) for number, _, why in bad])
    rest: list[bytes] = []
    outage: Optional[BaseException] = None
    for i, (number, raw, op) in enumerate(good):
        try:
            send(op)
            done.sent += 1
        except Exception as exc:  # noqa: BLE001 - an outage stops, anything else is kept
            if is_outage(exc):
                outage = exc
                rest = [r for _, r, _ in good[i:]]
                break
            kept.append((number, raw))
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            done.quarantined.append((number, f"rejected: {reason}"))
    if kept:
        with open(spool_dir / QUARANTINE, "ab") as fh:
            fh.writelines(raw if raw.endswith(b"\n") else raw + b"\n"
                          for _, raw in sorted(kept))
        done.quarantined.sort()
    if rest:
        tmp = spool_dir / (PENDING + ".tmp")
        tmp.write_bytes(b"".join(rest))
        os.replace(tmp, path)
    else:
        path.unlink()
    if outage is not None:
        raise outage
    if not (spool_dir / QUARANTINE).exists():
        shutil.rmtree(spool_dir, ignore_errors=True)
    return done
