"""`serve(cfg)`: load the model, bind the port, run the OpenAI-compatible app until interrupted
(`vtc-lab serve`; the routes are `vtc_lab.serve.routes`, the model thread
`vtc_lab.serve.runner`)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

from vtc_lab.models.reading import ReadingSpec, read_reading, run_export_model, run_reading
from vtc_lab.serve.config import ServeConfig


def resolve_model(cfg: ServeConfig) -> ServeConfig:
    """`cfg` with `train_run` turned into the model config of its export (served under the
    run's name unless `served_model_name` is set)."""
    if not cfg.train_run:
        return cfg
    model = run_export_model(cfg.train_run, cfg.model)
    return replace(cfg, model=model, train_run=None,
                   served_model_name=cfg.served_model_name or model.name)


def reading_of(cfg: ServeConfig, train_run: str | None) -> ReadingSpec | None:
    """What the served model was trained to read, found as `vtc-lab eval` finds it: a train
    run's record (`run_reading`), else the export's reading.json; None for other models."""
    if train_run:
        return run_reading(train_run)[0]
    if cfg.model.source != "pretrained" or not cfg.model.path:
        return None
    return read_reading(cfg.model.path)


def serve(cfg: ServeConfig) -> None:
    """Load the model, bind the port (before loading nothing else), serve until interrupted."""
    import torch
    import uvicorn

    from vtc_lab.models import load_backbone
    from vtc_lab.serve.routes import create_app
    from vtc_lab.serve.runner import ModelRunner, ServingEngine

    train_run = cfg.train_run
    cfg = resolve_model(cfg)
    reading = reading_of(cfg, train_run)
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as err:
        raise SystemExit(f"vtc-lab serve: cannot bind {cfg.host}:{cfg.port} ({err}); "
                         "choose another port=") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    backbone = load_backbone(cfg.model)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    backbone.model.to(device).eval()
    host, port = sock.getsockname()[:2]

    def announce() -> None:
        print(f"vtc-lab serve: {cfg.model_name!r} on http://{host}:{port}/v1"
              + (" (reading spec of the export applied)" if reading else ""), flush=True)
        if cfg.port_file:
            tmp = Path(cfg.port_file + ".tmp")
            tmp.write_text(f"{host}:{port}\n")
            os.replace(tmp, cfg.port_file)

    runner = ModelRunner(ServingEngine(backbone, max_model_len=cfg.max_model_len),
                         max_batch_size=cfg.max_batch_size, batch_wait_s=cfg.batch_wait_ms / 1000)
    app = create_app(runner, cfg, reading, on_startup=announce)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)).run(
        sockets=[sock])
