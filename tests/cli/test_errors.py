"""What a user sees when a command fails, through the real console entry point: one message
naming the problem and the fix, no traceback (VTC_LAB_DEBUG=1 shows it), and for config
errors nothing created - no MLflow store or run, no run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def vtc(tmp_path: Path, *args: str, debug: bool = False,
        output_root: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VTC_LAB_DEBUG", None)
    if debug:
        env["VTC_LAB_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", *args,
                           f"output_root={output_root or tmp_path / 'out'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("overrides, messages", [
    (["optim.max_steps=-3"], ["optim.max_steps must be >= 1"]),
    (["+renderer.fontsize=20", "optim.lr=inf"],  # both reported at once
     ["renderer.fontsize is not a setting of renderer (did you mean renderer.font_size?)",
      "optim.lr must be a finite number, got inf"]),
    # rank 0 alone would generate with sharded weights: a deadlock (docs/inference.md), refused
    (["trainer=fsdp_cpu", "evaluator=default"],
     ["evaluator.enabled=true cannot run with trainer.strategy=fsdp"]),
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


def test_truncated_jsonl_gz_names_the_file(tmp_path):
    import gzip

    good = tmp_path / "good.jsonl.gz"
    with gzip.open(good, "wt") as fh:
        for i in range(200):
            fh.write('{"text": "line %d of a text that is long enough to compress"}\n' % i)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a copy that stopped
    res = vtc(tmp_path, "render", f"file={cut}", "field=text", "tracking=off")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    line = [x for x in res.stderr.splitlines() if x.startswith("vtc-lab render: error:")]
    assert len(line) == 1 and str(cut) in line[0] and "truncated" in line[0]
    assert not (tmp_path / "out" / "render").exists()  # no report directory


def test_tiny_font_size_is_a_config_error(tmp_path):
    res = vtc(tmp_path, "render", "renderer.font_size=0.01", "text=hello", "tracking=off")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "renderer.font_size" in res.stderr and "Traceback" not in res.stderr
    assert "ppem" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_unquoted_hex_colour_says_how_to_quote_it(tmp_path):
    res = vtc(tmp_path, "render", "renderer.text_color=#FFFFFF", "text=hello", "tracking=off")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert """'renderer.text_color="#FFFFFF"'""" in res.stderr
    assert not (tmp_path / "out").exists()


def test_greedy_decoding_with_several_samples_is_refused_before_anything_exists(tmp_path):
    res = vtc(tmp_path, "eval", "loop.do_sample=false", "benchmark.samples_per_problem=4")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "do_sample" in res.stderr and "samples_per_problem" in res.stderr
    assert not (tmp_path / "out").exists()  # no MLflow store, no run, no eval directory


HOLD = """
import sys, time
from vtc_lab.outputlock import OutputLock
with OutputLock(sys.argv[1], job="vtc-lab train (first)"):
    print("held", flush=True)
    time.sleep(300)
"""


def test_train_into_a_locked_run_dir_is_refused_before_any_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        res = vtc(tmp_path, "train", f"run_dir={run_dir}")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert f"pid {proc.pid}" in res.stderr and str(run_dir) in res.stderr
    assert not (tmp_path / "out").exists()  # no MLflow store, so no FAILED run
    assert sorted(p.name for p in run_dir.iterdir()) == [".vtc-lab.lock"]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="checks the refusal on a machine without CUDA")
def test_gpu_trainer_without_cuda_is_one_line_before_anything_exists(tmp_path):
    res = vtc(tmp_path, "train", "trainer=gpu")
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "trainer.accelerator=gpu" in lines[0] and "CUDA" in lines[0]
    assert "trainer=cpu" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only bind mount (root ignores file modes, not a read-only mount)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    res = subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {res.stderr.decode()[:200]}")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_train_into_a_read_only_output_is_one_line_naming_the_path(tmp_path, read_only_dir):
    out = read_only_dir / "out"
    res = vtc(tmp_path, "train", f"hydra.run.dir={tmp_path / 'job'}", output_root=out)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr[-3000:]
    assert f"output_root={out}" in lines[0] and "read-only file system" in lines[0]
    assert os.listdir(read_only_dir) == []


def test_train_with_a_file_where_the_output_directory_should_be(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    res = vtc(tmp_path, "train", f"hydra.run.dir={tmp_path / 'job'}",
              output_root=blocker / "out")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert f"{blocker} is a file, not a directory" in res.stderr
    assert blocker.read_text() == "not a directory"


def _file_size_limit():
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # Python ignores SIGXFSZ


def test_train_onto_a_full_disk_is_one_line_naming_the_file(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, set in the forked child before exec) fails the first
    write past 300 kB with EFBIG, as a full disk fails it with ENOSPC."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VTC_LAB_DEBUG", None)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", "train", f"output_root={out}",
                          "tracking=off", "optim.max_steps=2", f"hydra.run.dir={tmp_path / 'job'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                         preexec_fn=_file_size_limit)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.startswith("vtc-lab train: error:")]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "File too large" in lines[0] and "a file-size limit was reached" in lines[0]
    assert f"{out}/" in lines[0]  # the file it was writing
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("*.tmp*"))
