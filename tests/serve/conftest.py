"""Real `vtc-lab serve` processes on loopback over the tiny exported checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HYDRA_FULL_ERROR="1")
    return e


class Server:
    """One `vtc-lab serve` subprocess; `url` is its OpenAI base URL."""

    def __init__(self, ckpt: Path, workdir: Path, *args: str, port: int = 0,
                 preexec_fn=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port_file = workdir / f"port-{time.monotonic_ns()}"
        self.log = (workdir / f"{self.port_file.name}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vtc_lab.cli.main", "serve", "model=local",
             f"model.path={ckpt}", f"port={port}", f"port_file={self.port_file}", "threads=1",
             *args], env=env(), stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn)
        deadline = time.time() + 180
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"vtc-lab serve did not start: {self.read_log()}")
            time.sleep(0.2)
        self.url = "http://" + self.port_file.read_text().strip() + "/v1"
        self.root = self.url[: -len("/v1")]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def kill(self) -> None:
        """kill -9: the server dies mid-request, as a crashed GPU node would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """The tiny Qwen3-VL exported like `vtc-lab train` exports (save_backbone)."""
    import torch

    from vtc_lab.models import ModelConfig, load_backbone, save_backbone

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "export"
    save_backbone(load_backbone(ModelConfig()), out)
    return out


@pytest.fixture(scope="session")
def server(ckpt, tmp_path_factory):
    srv = Server(ckpt, tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    """The real openai SDK against the session's server (no retries: a failure shows at once)."""
    import openai

    c = openai.OpenAI(base_url=server.url, api_key="EMPTY", max_retries=0, timeout=120)
    yield c
    c.close()
