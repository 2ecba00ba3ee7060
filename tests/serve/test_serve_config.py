"""`vtc-lab serve`'s config: conf/serve.yaml composes to the schema's defaults (declared once, in
`ServeConfig`), and the app runs the same config check as the other apps, before it binds or
loads anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import fields

import pytest
from hydra import compose, initialize_config_dir

import vtc_lab.cli.serve  # noqa: F401 - registers serve_schema
from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import ConfigError, validate
from vtc_lab.serve.config import ServeConfig


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("serve", overrides=list(overrides))


def test_the_preset_is_the_schema():
    cfg = validate(composed())
    default = ServeConfig()
    for f in fields(ServeConfig):
        if f.name != "model":
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name


def test_unknown_keys_and_non_finite_numbers_are_refused():
    with pytest.raises(ConfigError, match="did you mean served_model_name"):
        validate(composed("+servd_model_name=x"))
    with pytest.raises(ConfigError, match="batch_wait_ms must be a finite number"):
        validate(composed("batch_wait_ms=nan"))


@pytest.mark.parametrize("kw,match", [
    ({"served_model_name": "/abs/path"}, "served_model_name must be a short id"),
    ({"max_image_pixels": 10, "max_request_pixels": 5}, "max_request_pixels"),
    ({"max_model_len": 1}, "max_model_len"),
    ({"max_request_bytes": 0}, "max_request_bytes"),
])
def test_bad_values_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        ServeConfig(**kw)


def test_the_served_name_is_the_export_directory_name():
    from vtc_lab.models.config import ModelConfig

    cfg = ServeConfig(model=ModelConfig(source="pretrained", arch="auto",
                                        path="/data/runs/r7/vtc-r1-export/"))
    assert cfg.model_name == "vtc-r1-export"
    assert ServeConfig(served_model_name="vtc-r1", model=cfg.model).model_name == "vtc-r1"


def test_the_cli_refuses_a_bad_config_before_binding(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VTC_LAB_DEBUG", None)
    res = subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", "serve", f"port={port}",
                          f"port_file={tmp_path / 'port'}", "+max_batch=4"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "max_batch is not a setting of this app (did you mean max_batch_size?)" in res.stderr
    assert not (tmp_path / "port").exists()
