"""A real `mlflow server` (sqlite backend, one worker, free port) that a test can kill and start
again on the same port and store: the dying-server faults are injected for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ._helpers import child_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`python -m mlflow server` in its own process group (its workers die with it)."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "MlflowServer":
        self._log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", str(self.root / "server-artifacts")],
            cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
            start_new_session=True)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlflow server did not start:\n"
                                   + (self.root / "server.log").read_text()[-3000:])
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the server's process group (the group this fixture started, by its pid)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@pytest.fixture
def mlflow_server_proc(tmp_path, seed_store):
    seed_store(tmp_path / "server.db")  # a migrated store: the server only checks its schema
    server = MlflowServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(mlflow_server_proc):
    return mlflow_server_proc.base
