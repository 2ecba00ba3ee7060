"""`serve(cfg)`: load the model, bind the port, run the OpenAI-compatible app until interrupted
(`vtc-lab serve`; the app itself is `vtc_lab.serve.app`)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

from vtc_lab.models.reading import run_export_model
from vtc_lab.serve.config import ServeConfig


def resolve_model(cfg: ServeConfig) -> ServeConfig:
    """`cfg` with `train_run` turned into the model config of its export."""
    if not cfg.train_run:
        return cfg
    return replace(cfg, model=run_export_model(cfg.train_run, cfg.model), train_run=None)


def serve(cfg: ServeConfig) -> None:
    """Load the model, bind the port (before loading nothing else), serve until interrupted."""
    import torch
    import uvicorn

    from vtc_lab.models import load_backbone
    from vtc_lab.serve.app import create_app
    from vtc_lab.serve.batcher import ServingEngine

    cfg = resolve_model(cfg)
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
        print(f"vtc-lab serve: {cfg.model_name!r} on http://{host}:{port}/v1", flush=True)
        if cfg.port_file:
            tmp = Path(cfg.port_file + ".tmp")
            tmp.write_text(f"{host}:{port}\n")
            os.replace(tmp, cfg.port_file)

    app = create_app(ServingEngine(backbone), cfg.model_name, max_batch_size=cfg.max_batch_size,
                     batch_wait_s=cfg.batch_wait_ms / 1000, default_max_tokens=cfg.default_max_tokens,
                     max_images_per_prompt=cfg.max_images_per_prompt, root=cfg.model.path,
                     on_startup=announce)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)).run(
        sockets=[sock])
