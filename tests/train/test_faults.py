"""Training under injected faults, for real: an absurd learning rate, truncated and garbage
checkpoints, a full-file-size limit mid-save, a corrupt run.json, a mistyped dataset_dir and a
second writer on the same run directory."""

from __future__ import annotations

import errno
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vtc_lab.outputlock import OutputLockedError
from vtc_lab.train.checkpoints import (CheckpointError, checkpoint_problem, read_checkpoint,
                                       resume_checkpoint)
from vtc_lab.train.module import NonFiniteError, first_non_finite
from vtc_lab.train.run import RunDirError, train

from .test_train import make_cfg

torch.set_num_threads(1)


def _ckpt(path: Path, step: int) -> Path:
    torch.save({"global_step": step, "state_dict": {"w": torch.randn(256, 256)}}, path)
    return path


def test_resume_skips_a_truncated_last_ckpt_and_names_it(tmp_path, capfd):
    _ckpt(tmp_path / "step-4.ckpt", 4)
    last = _ckpt(tmp_path / "last.ckpt", 8)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a full disk left under the final name
    assert resume_checkpoint(tmp_path) == tmp_path / "step-4.ckpt"
    err = capfd.readouterr().err
    assert f"{last} (it is truncated" in err and "resuming from the newest loadable one" in err


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, "half"])
def test_no_loadable_checkpoint_is_one_clear_error(tmp_path, content):
    last = _ckpt(tmp_path / "last.ckpt", 8)
    if content == "half":
        content = last.read_bytes()[:1000]
    last.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        resume_checkpoint(tmp_path)
    assert str(last) in str(err.value) and f"rm -r '{tmp_path}'" in str(err.value)
    with pytest.raises(CheckpointError, match=str(last)):
        read_checkpoint(last)


def test_flipped_byte_inside_a_checkpoint_is_detected(tmp_path):
    last = _ckpt(tmp_path / "last.ckpt", 8)
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data, the archive structure intact
    last.write_bytes(bytes(data))
    assert "CRC" in checkpoint_problem(last)


def _save_under_a_file_size_limit(checkpoint: dict, path: str) -> None:
    """In a forked child (torch and Lightning already imported: no ~6 s of re-imports), with a
    200 KB file-size limit: writes past it fail with EFBIG instead of SIGXFSZ. Exit code: the
    errno of the failed save, 0 if it did not fail."""
    import resource
    import signal

    from vtc_lab.train.checkpoints import AtomicCheckpointIO

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    except OSError as exc:
        os._exit(exc.errno or 255)
    os._exit(0)


def test_save_that_runs_out_of_space_leaves_the_previous_checkpoint(tmp_path):
    last = _ckpt(tmp_path / "last.ckpt", 8)  # ~260 KB on disk already, written without limit
    before = last.read_bytes()
    checkpoint = {"state_dict": {"w": torch.randn(512, 512)}}  # ~1 MB: past the limit
    child = multiprocessing.get_context("fork").Process(
        target=_save_under_a_file_size_limit, args=(checkpoint, str(last)))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == errno.EFBIG  # the write hit the limit and raised
    assert last.read_bytes() == before and checkpoint_problem(last) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


def test_absurd_learning_rate_stops_with_a_clear_error_and_exports_nothing(tmp_path):
    cfg = make_cfg(tmp_path, "optim.lr=1e6", "optim.max_steps=12")
    with pytest.raises(NonFiniteError) as err:
        train(cfg)
    msg = str(err.value)
    assert "training stopped at step" in msg and "Lower optim.lr" in msg
    assert not (tmp_path / "run" / "export").exists()
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):  # whatever was kept is finite
        assert first_non_finite(torch.load(ckpt, weights_only=False)["state_dict"]) is None


def test_mistyped_dataset_dir_is_refused_and_nothing_is_built_there(tmp_path):
    typo = tmp_path / "datsets" / "mine"
    with pytest.raises(FileNotFoundError, match="is not a built dataset"):
        train(make_cfg(tmp_path, f"dataset_dir={typo}"))
    assert not typo.exists() and not typo.parent.exists()


def test_corrupt_run_json_is_named(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    _ckpt(run / "checkpoints" / "last.ckpt", 8)
    (run / "run.json").write_text('{"mlflow_run_id": "abc"')  # torn
    with pytest.raises(RunDirError, match=f"{run / 'run.json'} is corrupt"):
        train(make_cfg(tmp_path, "optim.max_steps=9"))
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was created


HOLD = """
import sys, time
from vtc_lab.outputlock import OutputLock
with OutputLock(sys.argv[1], job="vtc-lab train (first)"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_second_train_into_a_locked_run_dir_is_refused_naming_the_holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid} on host"):
            train(make_cfg(tmp_path))
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".vtc-lab.lock"]
        assert not (tmp_path / "mlflow.db").exists()  # refused before any run was created
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
