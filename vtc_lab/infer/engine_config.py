"""`EngineConfig`: the schema of the `engine` config group (conf/engine/*.yaml are presets of it).

Which engine generates behind the loops: `hf` (Hugging Face `generate` in this process, the
model from the `model` group) or `openai` (any OpenAI-compatible server: `vllm serve`, SGLang,
`vtc-lab serve`; see docs/engines.md). Torch-free, so configs compose without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

from vtc_lab.infer.engines import get_engine


@dataclass
class EngineConfig:
    name: str = "hf"
    """A registered engine (`vtc_lab.infer.engines`). `hf`: generate in this process with the
    `model` group's checkpoint. `openai`: send every round to the OpenAI-compatible servers in
    `base_urls` (the `model` group is then not loaded)."""

    base_urls: list[str] = field(default_factory=list)
    """OpenAI base URLs, one per server (e.g. `http://gpu1:8000/v1`; a URL without the `/v1`
    suffix gets it). Requests are spread over all of them; results do not depend on which server
    answers. Only for an engine that talks to servers (`openai`)."""

    model: str | None = None
    """The served model name (`vllm serve ... --served-model-name`, `vtc-lab serve
    served_model_name=...`). null: the one model every server lists under /v1/models."""

    api_key_env: str = "VTC_LAB_API_KEY"
    """Environment variable holding the servers' API key (`vllm serve --api-key`); unset or empty:
    the placeholder key `EMPTY`. The key itself never goes into a config, a log or MLflow."""

    max_concurrency: int = 64
    """Most requests in flight at once over all servers. With `per_sample` (the default) this
    many samples advance at once, each with one round in flight; raise it to keep a vLLM
    server's continuous batching full. Without, the loop hands the engine one batch of
    `loop.batch_size` rounds at a time: min(loop.batch_size, this) in flight."""

    per_sample: bool = True
    """Drive each sample on its own: its next round is sent as soon as its previous round
    returns, and a finished sample's slot goes to the next one (`loop.batch_size` plays no
    part). false: the loop's lockstep batches, where every sample of a batch waits for the
    batch's slowest round. Same records either way (each sample depends only on its own rounds
    and seeds); experiments/perf/openai_pipeline.py measures the throughput of both."""

    timeout_s: float = 3600.0
    """Deadline of one request (a round of 8,192 tokens on a busy server can take minutes)."""

    max_retries: int = 6
    """Retries of one request after a transient failure (connection refused or reset, timeout,
    HTTP 408/409/429/5xx), each on the next server in turn, with exponential backoff."""

    retry_backoff_s: float = 1.0
    """First backoff delay; doubled after each retry, capped at `retry_backoff_max_s`."""

    retry_backoff_max_s: float = 30.0
    """Longest single backoff delay."""

    connect_timeout_s: float = 10.0
    """Deadline of each check request sent before any work (models list, tokenize, probes)."""

    image_token: str | None = None
    """The image placeholder token whose count in the prompt gives the vision tokens
    (`<|image_pad|>` for Qwen2/2.5/3-VL, `<|image|>` for GLM-4.1V/Glyph). null: detected through
    the server's /tokenize among those two."""

    def __post_init__(self) -> None:
        if get_engine(self.name).servers:
            if not self.base_urls:
                raise ValueError(f"engine.base_urls is empty: engine={self.name} needs at least "
                                 "one server, e.g. engine.base_urls=[http://localhost:8000/v1]")
            for url in self.base_urls:
                parsed = urlparse(str(url))
                if parsed.scheme not in ("http", "https") or not parsed.netloc:
                    raise ValueError(f"engine.base_urls: {url!r} is not an http(s) URL "
                                     "(expected e.g. http://host:8000/v1)")
            if len(set(self.normalized_urls)) != len(self.base_urls):
                raise ValueError(f"engine.base_urls lists a server twice: {self.base_urls}")
        if not isinstance(self.per_sample, bool):
            raise ValueError(f"engine.per_sample must be true or false, got {self.per_sample!r}")
        for name in ("max_concurrency",):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"engine.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"engine.max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("timeout_s", "connect_timeout_s", "retry_backoff_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"engine.{name} must be > 0, got {getattr(self, name)}")
        if self.retry_backoff_s < 0:
            raise ValueError(f"engine.retry_backoff_s must be >= 0, got {self.retry_backoff_s}")

    @property
    def normalized_urls(self) -> list[str]:
        """`base_urls` without trailing slashes, each ending in `/v1`."""
        out = []
        for url in self.base_urls:
            url = str(url).rstrip("/")
            out.append(url if url.endswith("/v1") else url + "/v1")
        return out
