"""Two `eval`s into one predictions directory: the second is refused, naming the first (a real
holder process), before it loads a model or creates an MLflow run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vtc_lab.infer.offline import evaluate
from vtc_lab.outputlock import OutputLockedError

from .test_eval_cli import make_cfg

HOLD = """
import sys, time
from vtc_lab.outputlock import OutputLock
with OutputLock(sys.argv[1], job="vtc-lab eval (first)"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_second_eval_into_the_same_output_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "preds"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid} on host"):
            evaluate(make_cfg(tmp_path, "loop=none", f"output_dir={out}", "benchmark.limit=1"))
        assert sorted(p.name for p in out.iterdir()) == [".vtc-lab.lock"]  # no records
        assert not (tmp_path / "out" / "mlflow.db").exists()  # no run either
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
