"""Where runs are stored: URI resolution, the one-time sqlite migration, server reachability.

Parallel jobs that open a fresh sqlite store at the same moment race in MLflow's alembic
migration and crash, so the store is created under an exclusive file lock (once per process and
URI); the Hydra callback does it in the launching process before any job starts.
"""

from __future__ import annotations

import fcntl
import os
import threading
import json
import urllib.error
import urllib.parse
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
    return sqlite_uri(Path(output_root).expanduser().resolve() / DB_NAME)


def sqlite_uri(path: str | os.PathLike) -> str:
    """`sqlite:///` URI of a database file. The path is percent-quoted: SQLAlchemy decodes the
    URI, so a raw `?` would start a query string (the database lands elsewhere) and a raw `%41`
    would name another directory."""
    return "sqlite:///" + urllib.parse.quote(str(path))


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///` URI (percent-decoded, as SQLAlchemy reads it), else
    None."""
    if uri.startswith("sqlite:///"):
        return Path(urllib.parse.unquote(uri[len("sqlite:///"):].split("?", 1)[0]))
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
    """Fail fast, naming the URI, when an http(s) tracking server does not answer `/health`, or
    answers but is not an MLflow tracking server (its REST API must answer with JSON)."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http only)
            if resp.status >= 400:
                raise TrackingUnavailableError(
                    f"MLflow tracking server {uri} answered HTTP {resp.status} on /health")
    except urllib.error.HTTPError as exc:
        raise TrackingUnavailableError(_not_mlflow(uri, "/health", exc.code,
                                                   exc.headers.get("Content-Type"), exc.read(200)))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailableError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
            f"(`mlflow server --host 127.0.0.1 --port ...`), fix tracking.uri, or run with "
            f"tracking=local / tracking=off") from exc
    api = "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(uri.rstrip("/") + api, timeout=timeout_s) as resp:  # noqa: S310
            status, ctype, body = resp.status, resp.headers.get("Content-Type"), resp.read(4096)
    except urllib.error.HTTPError as exc:
        status, ctype, body = exc.code, exc.headers.get("Content-Type"), exc.read(200)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TrackingUnavailableError(
            f"the tracking server at {uri} answered /health but not its MLflow API ({api}: "
            f"{getattr(exc, 'reason', exc)}); check tracking.uri") from exc
    try:
        ok = status < 400 and isinstance(json.loads(body or b"{}"), dict)
    except ValueError:
        ok = False
    if not ok:
        raise TrackingUnavailableError(_not_mlflow(uri, api, status, ctype, body))


def _not_mlflow(uri: str, path: str, status: int, ctype: Optional[str], body: bytes) -> str:
    text = body[:120].decode("utf-8", "replace").replace("\n", " ").strip()
    return (f"tracking.uri={uri} answers, but is not an MLflow tracking server: GET {path} "
            f"answered HTTP {status} ({ctype or 'no content type'}): {text!r}. Point "
            f"tracking.uri at the MLflow server (`mlflow server --host ... --port ...` prints "
            f"its address), or run with tracking=local / tracking=off")


def prepare_store(uri: str, timeout_s: float = 5.0) -> None:
    """Make `uri` ready for concurrent use: sqlite -> create + migrate once under a file lock;
    server -> check it answers (and bound every later request: see `outage`). Idempotent and
    cheap after the first call in a process."""
    from vtc_lab.tracking.outage import bound_http_requests

    with _prepared_lock:
        if uri in _prepared:
            return
        db = sqlite_path(uri)
        if db is None:
            bound_http_requests()
            check_server(uri, timeout_s)
        else:
            _prepare_sqlite(uri, db)
        _prepared.add(uri)


def _prepare_sqlite(uri: str, db: Path) -> None:
    from mlflow.tracking import MlflowClient

    # MLflow creates the parent of the URI's *undecoded* path too: a stray `a%3Fb/` directory
    # beside the real `a?b/` one. Remove it again if it is new and empty.
    raw_parent = Path(uri[len("sqlite:///"):]).parent
    stray = raw_parent != db.parent and not raw_parent.exists()
    with _file_lock(db.with_name(db.name + ".lock")):
        try:
            # Any store access creates the schema and runs pending migrations.
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/alembic errors: name the file
            if not db.is_file():
                raise
            raise TrackingUnavailableError(
                f"{db} is not a usable MLflow database ({_first_line(exc)}). It may be "
                f"corrupt or from an incompatible MLflow version. Move it aside to start a "
                f"fresh store (`mv '{db}' '{db}.bad'`; runs recorded in it are then not shown), "
                f"restore it from a backup, or use another tracking.uri / output_root") from exc
        finally:
            if stray:
                try:
                    raw_parent.rmdir()
                except OSError:
                    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("[SQL", "(Background")):
            return f"{type(exc).__name__}: {line.strip()[:200]}"
    return type(exc).__name__


def prepare(cfg: TrackingConfig, output_root: str | os.PathLike) -> Optional[str]:
    """resolve_tracking_uri + prepare_store: the fail-fast check every app runs first."""
    uri = resolve_tracking_uri(cfg, output_root)
    if uri is not None:
        prepare_store(uri, cfg.connect_timeout_s)
    return uri
