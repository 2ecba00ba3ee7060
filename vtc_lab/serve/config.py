"""`ServeConfig`: the schema of `vtc-lab serve` (conf/serve.yaml). Torch-free."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vtc_lab.models.config import ModelConfig


@dataclass
class ServeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The checkpoint to serve: `model=local model.path=DIR` (our export or any Hugging Face VLM
    directory), or the tiny random-init default."""
    train_run: str | None = None
    """A `vtc-lab train` run directory: serve its `export/` (overrides `model`)."""
    served_model_name: str | None = None
    """The name clients put in `model` (vLLM's --served-model-name). null: `model.path` when
    set, else `model.name`."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 to accept other machines (no authentication: keep it on a
    trusted network)."""
    port: int = 8000
    """TCP port; 0 picks a free one (printed at start-up and written to `port_file`)."""
    port_file: str | None = None
    """Write `host:port` here once the server accepts connections (scripts and tests wait on it)."""
    device: str = "auto"
    """auto (cuda if available, else cpu) | cpu | cuda | cuda:N."""
    max_batch_size: int = 8
    """Most requests generated together in one `generate` call (requests in flight from all
    clients are batched up to this)."""
    batch_wait_ms: float = 5.0
    """How long the batcher waits for more requests before starting a partial batch."""
    default_max_tokens: int = 1024
    """max_tokens of a chat request that sends none."""
    max_images_per_prompt: int = 64
    """Refuse prompts with more images (vLLM's --limit-mm-per-prompt)."""
    threads: int = 0
    """torch CPU threads; 0: torch's default."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_batch_size", "default_max_tokens", "max_images_per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model.path or self.model.name
