"""`ServeConfig`: the schema of `vtc-lab serve` (conf/serve.yaml). Torch-free.

Every default of the server is declared here and only here: the app, the routes and the runner
read them from the `ServeConfig` they are given (no keyword defaults of their own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vtc_lab.models.config import ModelConfig


@dataclass
class ServeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The checkpoint to serve: `model=local model.path=DIR` (our export or any Hugging Face VLM
    directory), or the tiny random-init default."""
    train_run: str | None = None
    """A `vtc-lab train` run directory: serve its `export/` (overrides `model`)."""
    served_model_name: str | None = None
    """The short id clients put in `model` (vLLM's --served-model-name). null: the name of the
    export's directory (`model.path`'s last component; a train run's name), else `model.name`.
    Never an absolute path: the id is what logs, results and client configs record."""
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
    """max_tokens of a chat request that sends none (a completion request without it gets 16,
    the OpenAI API's documented default)."""
    max_model_len: int | None = None
    """Longest prompt + max_tokens a request may ask for, advertised by `/v1/models` and
    enforced (400 'maximum context length'). null: the model's max_position_embeddings."""
    max_images_per_prompt: int = 64
    """Refuse prompts with more images (vLLM's --limit-mm-per-prompt), counted before any image
    is decoded."""
    max_image_pixels: int = 16_777_216
    """Most pixels (width x height, read from the image header before decoding) of one image."""
    max_request_pixels: int = 67_108_864
    """Most pixels of all images of one request together (bounds the decoded images' memory:
    about 3 bytes per pixel)."""
    max_image_bytes: int = 16_777_216
    """Longest decoded (base64-decoded) image file, checked before the bytes are decoded."""
    max_request_bytes: int = 33_554_432
    """Longest request body; a larger one is answered 413 before it is read."""
    max_prompt_chars: int = 1_000_000
    """Longest prompt text (all messages' text, or a completion prompt) in characters, checked
    before tokenizing."""
    threads: int = 0
    """torch CPU threads; 0: torch's default."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_batch_size", "default_max_tokens", "max_images_per_prompt",
                     "max_image_pixels", "max_request_pixels", "max_image_bytes",
                     "max_request_bytes", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2 or null, got {self.max_model_len}")
        if self.max_request_pixels < self.max_image_pixels:
            raise ValueError(f"max_request_pixels ({self.max_request_pixels}) must be >= "
                             f"max_image_pixels ({self.max_image_pixels})")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        name = self.served_model_name
        if name is not None and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}", name)
                                 or name.startswith("/")):
            raise ValueError(f"served_model_name must be a short id (letters, digits, . _ : / -; "
                             f"no leading /), got {name!r}")

    @property
    def model_name(self) -> str:
        """The id clients see: `served_model_name`, else the model directory's name."""
        if self.served_model_name:
            return self.served_model_name
        if self.model.path:
            return Path(self.model.path).resolve().name or self.model.name
        return self.model.name
