"""What a user sees when a command fails, through the real console entry point: one message
naming the problem and the fix, no traceback (VTC_LAB_DEBUG=1 shows it), and for config
errors nothing created - no MLflow store or run, no run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def vtc(tmp_path: Path, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VTC_LAB_DEBUG", None)
    if debug:
        env["VTC_LAB_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", *args,
                           f"output_root={tmp_path / 'out'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("overrides, messages", [
    (["optim.max_steps=-3"], ["optim.max_steps must be >= 1"]),
    (["+renderer.fontsize=20", "optim.lr=inf"],  # both reported at once
     ["renderer.fontsize is not a setting of renderer (did you mean renderer.font_size?)",
      "optim.lr must be a finite number, got inf"]),
])
def test_bad_config_is_one_message_and_creates_nothing(tmp_path, overrides, messages):
    res = vtc(tmp_path, "train", *overrides)
    assert res.returncode == 2, res.stderr[-3000:]
    for message in messages:
        assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()  # no mlflow.db, no run, no run directory


@pytest.mark.parametrize("command, args, message", [
    # the render app imports no torch: the error path through a real process in ~2 s
    ("render", ["file={missing}", "tracking=off"], "input file not found: {missing}"),
    # the same handler after the training stack is imported (in-process, the same refusal is
    # tests/train/test_faults.py::test_mistyped_dataset_dir_is_refused_and_nothing_is_built_there)
    pytest.param("train", ["dataset_dir={missing}", "tracking=off"],
                 "dataset_dir={missing} is not a built dataset", marks=pytest.mark.slow),
], ids=["render", "train"])
def test_missing_input_is_one_message_and_debug_shows_the_traceback(tmp_path, command, args,
                                                                    message):
    missing = tmp_path / "no-such-input"
    res = vtc(tmp_path, command, *(a.format(missing=missing) for a in args))
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines()
             if line.startswith(f"vtc-lab {command}: error:")]
    assert len(lines) == 1 and message.format(missing=missing) in lines[0]
    assert "Traceback" not in res.stderr and "VTC_LAB_DEBUG=1" in res.stderr


@pytest.mark.slow
def test_debug_switch_shows_the_traceback(tmp_path):
    typo = tmp_path / "no-such-dataset"
    debug = vtc(tmp_path, "train", f"dataset_dir={typo}", "tracking=off", debug=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "FileNotFoundError" in debug.stderr


@pytest.mark.slow
def test_unknown_override_key_is_hydras_message_without_traceback(tmp_path):
    res = vtc(tmp_path, "train", "trainer.no_such_key=1")
    assert res.returncode == 2
    assert "no_such_key" in res.stderr and "Traceback" not in res.stderr
