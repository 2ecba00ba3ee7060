"""`vtc-lab` behaves like the tools users know: `--version`, a short `--help` per command, tab
completion in a real bash, `report experiment=<preset>`, and the job's config choices said
once at its start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vtc_lab
from vtc_lab.cli import main as cli_main


def test_version(capsys):
    cli_main.main(["--version"])
    assert capsys.readouterr().out == f"vtc-lab {vtc_lab.__version__}\n"


def test_command_help_is_short_with_groups_and_three_examples(capsys):
    cli_main.main(["train", "--help"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 30, out
    groups = {line.split()[0]: line.split()[1:] for line in lines
              if line.startswith("  ") and not line.strip().startswith("vtc-lab")}
    assert groups["model"][0] == "tiny_qwen3_vl" and "tiny_glm4v" in groups["model"]
    assert groups["trainer"][0] == "cpu" and "gpu" in groups["trainer"]
    examples = [line for line in lines if line.startswith("  vtc-lab train")]
    assert len(examples) == 3
    assert "vtc-lab train --cfg job" in out  # the full config, as before


@pytest.fixture
def vtc_on_path(tmp_path):
    """A `vtc-lab` executable for this checkout first on PATH (the completion calls it back)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vtc-lab"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vtc_lab.cli.main "$@"\n')
    exe.chmod(0o755)
    root = str(Path(vtc_lab.__file__).resolve().parents[1])
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _bash_complete(env, line: str) -> list[str]:
    """What bash offers at the end of `line` with vtc-lab's completion loaded."""
    script = """
source <(vtc-lab --completion bash)
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_vtc_lab
printf '%s\\n' "${COMPREPLY[@]}"
"""
    res = subprocess.run(["bash", "-c", script, "bash", line], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [x for x in res.stdout.splitlines() if x]


@pytest.mark.parametrize("line, offered", [
    ("vtc-lab tr", ["train"]),
    ("vtc-lab build", ["build-data"]),
    ("vtc-lab train mod", ["model="]),
    ("vtc-lab train model=tiny_g", ["tiny_glm4v"]),  # bash replaces what follows the `=`
    ("vtc-lab eval benchmark=ai", ["aime25"]),
    ("vtc-lab train trainer=", ["cpu", "ddp", "ddp_cpu", "deepspeed_zero3", "fsdp", "fsdp_cpu",
                                "gpu"]),
])
def test_tab_completion_in_a_real_bash(vtc_on_path, line, offered):
    assert _bash_complete(vtc_on_path, line) == offered


def _env():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


@pytest.mark.parametrize("preset", ["toy", "toy_compression"])  # the second extends the first
def test_report_accepts_the_experiment_preset(tmp_path, preset):
    from vtc_lab.tracking import TrackingConfig, finish_run, open_run, prepare

    out = tmp_path / "out"
    cfg = TrackingConfig(mode="local", experiment="toy")  # where both presets log
    run = open_run(cfg, prepare(cfg, out), run_name="toy-run-a")
    run.log_metrics({"train/loss": 0.5}, step=1)
    finish_run(run)
    res = subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", "report",
                          f"experiment={preset}", f"output_root={out}", "log_to_mlflow=false"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "toy-run-a" in (out / "reports" / "toy" / "all" / "report.md").read_text()


def test_the_jobs_config_choices_are_said_once_at_its_start(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", "render", "text=hello",
                          "renderer=dense", "tracking=off", "progress=false",
                          f"output_root={tmp_path / 'out'}"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    said = [line for line in (res.stdout + res.stderr).splitlines() if "vtc-lab render: " in line
            and "renderer=dense" in line]
    assert len(said) == 1, res.stdout + res.stderr
    assert "tracking=off" in said[0] and "text=hello" in said[0]
    assert f"(outputs: {tmp_path / 'out'}/runs/render/" in said[0]
