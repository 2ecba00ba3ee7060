"""The `tracking` config group: where MLflow runs go (no mlflow import here, so configs stay cheap).

Presets live in `conf/tracking/{local,server,off}.yaml`; every app schema has a
`tracking: TrackingConfig` field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

MODES = ("local", "server", "off")

# MLflow experiment names may hold almost anything, but a name we also use as a directory
# (the local artifact root) must stay a single, tame path component.
_EXPERIMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass
class TrackingConfig:
    """Where and how a vtc-lab app records its MLflow run."""

    mode: str = "local"
    """`local`: embedded sqlite store `<output_root>/mlflow.db` with artifacts in
    `<output_root>/mlartifacts/` (nothing to start); `server`: a running MLflow tracking server
    at `uri`; `off`: log nothing (every logging call becomes a no-op)."""

    uri: Optional[str] = None
    """Tracking URI. Required for `server` (e.g. `http://127.0.0.1:5000`); for `local` it may
    name another sqlite file (`sqlite:////abs/path/mlflow.db`); null = the default store."""

    experiment: str = "vtc-lab"
    """MLflow experiment name: one per vtc-lab experiment (the `experiment=` presets set it)."""

    run_name: Optional[str] = None
    """Run name; null = the Hydra override string of the job (what varies), or the app name."""

    resume_run_id: Optional[str] = None
    """Continue logging into this existing run (e.g. a resumed training). Params already logged
    with a different value are never overwritten: the new value is kept as a
    `param_changed.<key>` tag instead (MLflow refuses to change a logged param)."""

    tags: dict[str, str] = field(default_factory=dict)
    """Extra tags on every run (e.g. `{owner: alice, purpose: ablation}`)."""

    log_config: bool = True
    """Log the resolved config as `config/config.yaml` and Hydra's `.hydra/` directory."""

    connect_timeout_s: float = 5.0
    """How long to wait for a tracking server before failing (checked before any real work)."""

    retry_after_s: float = 30.0
    """During a tracking outage (server down, store locked or full) the job keeps running and
    spools its writes; this is how often it checks whether the store answers again (one cheap
    request) before resending them."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"tracking.mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.mode == "server":
            if not self.uri:
                raise ValueError("tracking.uri is required when tracking.mode=server "
                                 "(e.g. tracking.uri=http://127.0.0.1:5000)")
            if not re.match(r"^(https?://|databricks)", self.uri):
                raise ValueError(f"tracking.uri must be an http(s):// URI (or 'databricks') "
                                 f"when tracking.mode=server, got {self.uri!r}")
        if self.mode == "local" and self.uri and not self.uri.startswith("sqlite:///"):
            raise ValueError(f"tracking.uri must be a sqlite:/// URI when tracking.mode=local, "
                             f"got {self.uri!r} (use tracking=server for a tracking server)")
        if not _EXPERIMENT_RE.match(self.experiment or ""):
            raise ValueError(f"tracking.experiment must be 1-128 characters of letters, digits, "
                             f"'_', '.', '-' (starting with a letter or digit), "
                             f"got {self.experiment!r}")
        if self.connect_timeout_s <= 0:
            raise ValueError(f"tracking.connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        if not self.retry_after_s > 0:
            raise ValueError(f"tracking.retry_after_s must be > 0, got {self.retry_after_s}")
        if not isinstance(self.tags, dict):
            raise ValueError(f"tracking.tags must be a mapping, got {type(self.tags).__name__}")
        self.tags = {str(k): str(v) for k, v in self.tags.items()}
