"""`engine=openai` as a client: torch-free, and `vtc-lab eval` end to end against a real HTTP
server on 127.0.0.1 (tests/infer/fake_openai.py, standard library only), in a subprocess where
importing torch, transformers or lightning fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.infer.fake_openai import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]

# A meta-path finder that refuses the heavy packages and writes each refused name to stderr,
# then the `vtc-lab` console script's main (what `vtc-lab eval ...` runs).
NO_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torch', 'transformers', 'lightning'):
                print('REFUSED-IMPORT ' + name, file=sys.stderr)
                raise ImportError('blocked for this test: ' + name)
            return None
    sys.meta_path.insert(0, _NoTorch())
    from vtc_lab.cli.main import main
    sys.argv = ['vtc-lab'] + sys.argv[1:]
    main()
""")


def write_problems(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": "3"}) + "\n"
                            for q in questions))
    return path


def run_eval(tmp_path: Path, url: str, bench: Path, *extra: str, no_torch: bool = True):
    """`vtc-lab eval engine=openai` in a fresh process; (completed process, output dir)."""
    out = tmp_path / "out"
    args = ["engine=openai", f"engine.base_urls=[{url}]", "benchmark=local_jsonl",
            f"benchmark.path={bench}", "loops=[optical,text,none]", "loop.max_rounds=3",
            "loop.max_new_tokens=24", "loop.batch_size=2", "grade_workers=1", "progress=false",
            "log_images=0", "tracking=off", f"output_root={tmp_path}", f"output_dir={out}",
            "engine.retry_backoff_s=0.01", "engine.max_retries=1", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VTC_LAB_DEBUG", None)
    cmd = [sys.executable, "-c", NO_TORCH, "eval", *args] if no_torch else \
        [sys.executable, "-m", "vtc_lab.cli.main", "eval", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    return proc, out


def test_the_blocker_really_blocks_torch(tmp_path):
    """Not vacuous: in the test's subprocess an engine=hf eval (which needs torch) fails on the
    refused import."""
    bench = write_problems(tmp_path / "b.jsonl", ["What is 1+2?"])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = NO_TORCH.replace("main()", "import vtc_lab.infer.engine")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "REFUSED-IMPORT torch" in proc.stderr
    assert bench.exists()


def test_eval_against_a_server_runs_without_torch(tmp_path):
    bench = write_problems(tmp_path / "b.jsonl",
                           [f"What is {i}+{3 - i}? Think step by step." for i in range(4)])
    with FakeOpenAIServer() as server:
        proc, out = run_eval(tmp_path, server.url, bench)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REFUSED-IMPORT" not in proc.stderr  # nothing even tried to import torch
    metrics = json.loads((out / "metrics.json").read_text())
    for mode in ("optical", "text", "none"):
        rows = [json.loads(x) for x in (out / f"local__{mode}.graded.jsonl").read_text().splitlines()]
        assert sorted(r["problem_id"] for r in rows) == ["0", "1", "2", "3"]
        assert metrics[f"eval/local/{mode}/final_rate"] == \
            sum(r["status"] == "final" for r in rows) / 4
    # the fake model ends a round with an answer one time in three: the loops ran rounds > 1
    optical = [json.loads(x) for x in (out / "local__optical.graded.jsonl").read_text().splitlines()]
    assert max(len(r["rounds"]) for r in optical) > 1
    assert any(r["rounds"][-1]["context_vision_tokens"] > 0 for r in optical)
    assert server.calls["/v1/completions"] > 0  # loop=text continued its turn from token ids
