"""Where runs are stored: URI resolution, the one-time sqlite migration, server reachability.

Parallel jobs that open a fresh sqlite store at the same moment race in MLflow's alembic
migration and crash, so the store is created under an exclusive file lock (once per process and
URI); the Hydra callback does it in the launching process before any job starts.
"""

from __future__ import annotations

import fcntl
import os
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from vtc_lab.tracking.config import TrackingConfig

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"

_prepared: set[str] = set()
_prepared_lock = threading.Lock()


class TrackingUnavailableError(RuntimeError):
    """The configured tracking store cannot be reached; raised before any expensive work."""


def resolve_tracking_uri(cfg: TrackingConfig, output_root: str | os.PathLike) -> Optional[str]:
    """The MLflow tracking URI for `cfg` (None when tracking is off).

    `local` without a URI -> `sqlite:///<abs output_root>/mlflow.db`, so runs live next to the
    outputs they describe and survive a change of working directory.
    """
    if cfg.mode == "off":
        return None
    if cfg.uri:
        return cfg.uri
    if cfg.mode == "server":  # TrackingConfig validation already refuses this
        raise ValueError("tracking.uri is required when tracking.mode=server")
    return "sqlite:///" + str(Path(output_root).expanduser().resolve() / DB_NAME)


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///` URI, else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def artifact_location(uri: str, experiment: str) -> Optional[str]:
    """Artifact root for a new experiment: `<db dir>/mlartifacts/<experiment>` for sqlite stores
    (not MLflow's `./mlruns` relative to whatever the working directory is); None for servers,
    which proxy artifacts themselves."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / ARTIFACTS_DIR / experiment).resolve().as_uri()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, when an http(s) tracking server does not answer `/health`."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http only)
            if resp.status >= 400:
                raise TrackingUnavailableError(
                    f"MLflow tracking server {uri} answered HTTP {resp.status} on /health")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailableError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
            f"(`mlflow server --host 127.0.0.1 --port ...`), fix tracking.uri, or run with "
            f"tracking=local / tracking=off") from exc


def prepare_store(uri: str, timeout_s: float = 5.0) -> None:
    """Make `uri` ready for concurrent use: sqlite -> create + migrate once under a file lock;
    server -> check it answers. Idempotent and cheap after the first call in a process."""
    with _prepared_lock:
        if uri in _prepared:
            return
        db = sqlite_path(uri)
        if db is None:
            check_server(uri, timeout_s)
        else:
            from mlflow.tracking import MlflowClient

            with _file_lock(db.with_name(db.name + ".lock")):
                # Any store access creates the schema and runs pending migrations.
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        _prepared.add(uri)


def prepare(cfg: TrackingConfig, output_root: str | os.PathLike) -> Optional[str]:
    """resolve_tracking_uri + prepare_store: the fail-fast check every app runs first."""
    uri = resolve_tracking_uri(cfg, output_root)
    if uri is not None:
        prepare_store(uri, cfg.connect_timeout_s)
    return uri
