"""A real `vtc-lab eval` process killed mid-run, restarted with the same command, reaches the
numbers of an uninterrupted run (slow: three processes each load the model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["benchmark.limit=6", "loop=text", "loop.max_rounds=3", "loop.max_new_tokens=24",
        "loop.batch_size=2", "grade_workers=1", "progress=false", "tracking=off"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HYDRA_FULL_ERROR="1")
    return e


def cmd(out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "vtc_lab.cli.main", "eval", *ARGS, f"output_dir={out_dir}",
            f"output_root={out_dir.parent}"]


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()[1:] if x.strip()]


@pytest.mark.slow
def test_killed_eval_resumes_to_the_same_numbers(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cmd(full), env=env(), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(cmd(killed), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pred = killed / "math500__text.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as the first batch is on disk
        if pred.exists() and len(records(pred)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(records(pred))
    assert 2 <= done_before < 6

    subprocess.run(cmd(killed), env=env(), check=True, capture_output=True, timeout=600)
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["eval/math500/text/resumed_samples"] == done_before
    for key in ("accuracy", "mean_at_k", "rounds_mean", "generated_tokens_total",
                "context_tokens_peak", "context_tokens_mean", "num_samples"):
        assert a[f"eval/math500/text/{key}"] == b[f"eval/math500/text/{key}"], key
    def outputs(d: Path) -> list[tuple[str, str]]:  # the graded file has no header line
        rows = [json.loads(x) for x in (d / "math500__text.graded.jsonl").read_text().splitlines()]
        return [(r["problem_id"], r["output"]) for r in rows]

    assert len(outputs(full)) == 6 and outputs(full) == outputs(killed)
