"""`vtc-lab eval engine=openai` end to end: the same records as `engine=hf` on the same
checkpoint, refusal before any work, several servers, dying servers, killed evals resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.serve.conftest import Server, env
from tests.serve.test_openai_engine import free_port
from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.eval  # noqa: F401 - registers eval_schema
from vtc_lab.infer.config import EvalConfig
from vtc_lab.infer.offline import evaluate
from vtc_lab.infer.openai_engine import EngineUnavailableError

COMMON = ["benchmark.limit=4", "loop.max_rounds=2", "loop.max_new_tokens=8", "loop.batch_size=2",
          "loop.do_sample=true", "loop.temperature=1.0", "grade_workers=1", "progress=false",
          "log_images=0", "tracking=off", "loops=[optical,text,none]"]


def make_cfg(root: Path, *overrides: str) -> EvalConfig:
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose("eval", overrides=[f"output_root={root}", *COMMON, *overrides])
    return OmegaConf.to_object(raw)


def openai_cfg(root: Path, *urls: str, extra: tuple[str, ...] = ()) -> EvalConfig:
    return make_cfg(root, "engine=openai", f"engine.base_urls=[{','.join(urls)}]", *extra)


def graded(out_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(out_dir.glob("*.graded.jsonl")):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for r in rows:
            r.pop("latency_s")
            for rr in r["rounds"]:
                rr.pop("generate_s")
                rr.pop("render_s", None)
        out[path.name] = rows
    return out


def only_dir(root: Path) -> Path:
    (d,) = [p.parent for p in (root / "eval").rglob("metrics.json")]
    return d


@pytest.mark.slow
def test_eval_engine_openai_equals_engine_hf(server, ckpt, tmp_path):
    """The whole `evaluate` (three loops, grading, predictions files) over the server equals the
    in-process run (slow: a second in-process model; the loops' parity is a fast test)."""
    hf = evaluate(make_cfg(tmp_path / "hf", "model=local", f"model.path={ckpt}"))
    oa = evaluate(openai_cfg(tmp_path / "oa", server.url))
    a, b = graded(only_dir(tmp_path / "hf")), graded(only_dir(tmp_path / "oa"))
    assert len(a) == 3 and a == b
    for key in ("accuracy", "num_samples", "context_tokens_peak", "compression_ratio",
                "generated_tokens_total", "rounds_mean"):
        for mode in ("optical", "text", "none"):
            assert hf[f"eval/math500/{mode}/{key}"] == oa[f"eval/math500/{mode}/{key}"], (mode, key)
    # the predictions header names the served model, not the server (a resume may use others)
    header = json.loads((only_dir(tmp_path / "oa") / "math500__none.jsonl").read_text()
                        .splitlines()[0])["header"]
    assert header["model"] == {"engine": "openai", "served_model": ckpt.name}
    assert server.url not in json.dumps(header)


def test_unreachable_server_fails_before_any_work(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = openai_cfg(tmp_path, url, extra=("engine.connect_timeout_s=2",))
    with pytest.raises(EngineUnavailableError, match=url):
        evaluate(cfg)
    assert not (tmp_path / "eval").exists()  # no predictions directory, nothing half-written


def test_wrong_model_fails_before_any_work(server, tmp_path):
    cfg = openai_cfg(tmp_path, server.url, extra=("engine.model=not-served",))
    with pytest.raises(EngineUnavailableError, match=f"{server.url}.*'not-served'"):
        evaluate(cfg)
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_two_servers_give_one_servers_records_and_survive_a_kill(server, ckpt, tmp_path):
    """Two processes share the work with the records one server gives; then one of two is
    killed -9 mid-run and its requests move to the other (retries), losing nothing."""
    other = Server(ckpt, tmp_path / "srv2")
    try:
        evaluate(openai_cfg(tmp_path / "one", server.url))
        before = _rows(other)
        evaluate(openai_cfg(tmp_path / "two", server.url, other.url))
        assert _rows(other) > before  # the second server did part of the work
        assert graded(only_dir(tmp_path / "two")) == graded(only_dir(tmp_path / "one"))

        import threading

        out = tmp_path / "dying" / "out"

        def kill_after_first_batch() -> None:  # mid-run: the optical loop's second batch
            pred = out / "math500__optical.jsonl"
            while not (pred.exists() and len(pred.read_text().splitlines()) >= 3):
                time.sleep(0.05)
            other.kill()

        killer = threading.Thread(target=kill_after_first_batch, daemon=True)
        killer.start()
        evaluate(openai_cfg(tmp_path / "dying", other.url, server.url,
                            extra=("engine.retry_backoff_s=0.2", f"output_dir={out}")))
        killer.join(timeout=5)
        assert other.proc.poll() is not None
        assert graded(out) == graded(only_dir(tmp_path / "one"))
    finally:
        other.stop()


def _rows(srv: Server) -> int:
    import urllib.request

    with urllib.request.urlopen(srv.url[: -len("/v1")] + "/metrics/batches", timeout=10) as r:
        return json.loads(r.read())["rows"]


@pytest.mark.slow
def test_killed_eval_resumes_without_loss_or_duplicates(server, tmp_path):
    # two samples in flight (engine.per_sample): records reach the file two by two, so the
    # kill lands mid-run
    args = ["benchmark.limit=6", "loop=text", "loop.max_rounds=3", "loop.max_new_tokens=24",
            "loop.batch_size=2", "grade_workers=1", "progress=false", "tracking=off",
            "engine=openai", f"engine.base_urls=[{server.url}]", "engine.max_concurrency=2"]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "vtc_lab.cli.main", "eval", *args, f"output_dir={out}",
                f"output_root={out.parent}"]

    def records(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text().splitlines()[1:] if x.strip()]

    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cmd(full), env=env(), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd(killed), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pred = killed / "math500__text.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if pred.exists() and len(records(pred)) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(records(pred))
    assert 2 <= done_before < 6

    subprocess.run(cmd(killed), env=env(), check=True, capture_output=True, timeout=600)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["eval/math500/text/resumed_samples"] == done_before
    keys = [(r["problem_id"], r["sample"]) for r in records(pred)]
    assert len(keys) == len(set(keys)) == 6  # nothing lost, nothing twice
    assert graded(full) == graded(killed)
