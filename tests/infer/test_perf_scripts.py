"""The latency benchmark and the cost-model script, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "experiments" / "perf"


@pytest.mark.slow
def test_loop_latency_forces_lengths_logs_and_validates(tmp_path):
    out = tmp_path / "ll.json"
    env_cmd = [sys.executable, str(SCRIPTS / "loop_latency.py"), "--models", "qwen3_vl",
               "--total", "64", "--round", "32", "--json", str(out),
               "--output-root", str(tmp_path / "runs"), "--throughput-kv-mb", "1.5"]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert len(data["points"]) == 2  # reuse on and off
    for point in data["points"]:
        text, optical = point["text"], point["optical"]
        # Forced lengths: exactly T tokens in both loops, EOS never emitted.
        assert text["generated_tokens"] == optical["generated_tokens"] == 64
        assert text["rounds"] == 1 and optical["rounds"] == 2
        assert point["speedup"] == pytest.approx(text["latency_s"] / optical["latency_s"])
        assert optical["images"] >= 1 and optical["compression"] > 0
        parts = sum(optical[k] for k in ("render_s", "preprocess_s", "vision_s", "prefill_s",
                                          "decode_s"))
        assert parts <= optical["latency_s"] * 1.01
    on = next(p for p in data["points"] if p["reuse"])
    assert on["optical"]["reused_tokens"] > 0
    # throughput mode: as many requests as each loop's batch-1 peak K/V fits in 1.5 MiB
    [thr] = data["throughput"]
    for mode in ("text", "optical"):
        t = thr[mode]
        assert t["kv_peak_bytes_per_request"] == on[mode]["kv_peak_bytes"]
        assert t["concurrency"] == max(1, min(32, int(1.5 * 2 ** 20 // t["kv_peak_bytes_per_request"])))
        assert t["requests_per_s"] == pytest.approx(t["concurrency"] / t["latency_s"])
    assert thr["throughput_ratio"] == pytest.approx(
        thr["optical"]["requests_per_s"] / thr["text"]["requests_per_s"])
    report = subprocess.run([sys.executable, "-m", "vtc_lab.cli.main", "report",
                             "tracking.experiment=perf-loop-latency",
                             f"output_root={tmp_path / 'runs'}"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert list((tmp_path / "runs" / "reports").rglob("loop_speedup_vs_length.png"))
    check = subprocess.run([sys.executable, str(SCRIPTS / "cost_model.py"), "validate", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "optical: mean abs error" in check.stdout and "speedup: mean abs error" in check.stdout


def test_openai_pipeline_benchmark_runs_both_schedules(tmp_path):
    """The per-sample vs batched benchmark, shrunk: both schedules run and agree."""
    out = tmp_path / "pipe.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "openai_pipeline.py"), "--problems", "6",
                           "--concurrency", "3", "--latency", "0", "--jitter", "0.01",
                           "--modes", "none,text", "--seeds", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["seed"]) for r in rows] == [("none", 0), ("text", 0)]
    assert all(r["same_records"] and r["requests"] >= 6 for r in rows)
    assert "| none |" in proc.stdout and "| text |" in proc.stdout


def _acceptance(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "acc"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "gpu_acceptance.py"), "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    report = json.loads((out / "gpu_acceptance.json").read_text()) \
        if (out / "gpu_acceptance.json").is_file() else {}
    return proc, report


@pytest.mark.slow
def test_gpu_acceptance_dry_run_passes_every_check_on_the_cpu(tmp_path):
    """The GPU acceptance script's CPU rehearsal: every step runs (tiny models), one line each,
    a JSON of figures; DeepSpeed is the one step a CPU cannot run."""
    proc, report = _acceptance(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status == {"static_cache": "PASS", "loop_latency": "PASS", "train_eval": "PASS",
                      "fsdp": "PASS", "zero3": "SKIP", "openai": "PASS"}
    lines = [line for line in proc.stdout.splitlines() if line.split(" ")[0] in
             ("PASS", "FAIL", "SKIP")]
    assert [line.split(" ")[1] for line in lines] == list(status)
    figures = {c["name"]: c["figures"] for c in report["checks"]}
    assert figures["static_cache"]["tiny_identical"] and figures["static_cache"]["8b_dims_identical"]
    assert figures["static_cache"]["8b_dims_static_step_ms"] > 0
    lat = figures["loop_latency"]
    for arch in ("qwen3_vl", "glm4v"):
        for batch in (1, 2):
            key = f"{arch}_T64_B{batch}"
            assert lat[f"{key}_speedup"] == pytest.approx(
                lat[f"{key}_text_latency_s"] / lat[f"{key}_optical_latency_s"])
            assert lat[f"{key}_optical_vision_s"] > 0 and lat[f"{key}_text_vision_s"] == 0
    assert figures["fsdp"]["resumed"] and figures["fsdp"]["global_step"] == 6
    assert any(k.endswith("/accuracy") for k in figures["train_eval"]["eval_metrics"])
    assert "stand-in" in figures["openai"]["server"]


def test_gpu_acceptance_refuses_without_cuda_and_names_bad_checks(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    proc, _ = _acceptance(tmp_path)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr
    proc, _ = _acceptance(tmp_path, "--dry-run", "--only", "static_cache,warp")
    assert proc.returncode == 2 and "unknown check(s) ['warp']" in proc.stderr


@pytest.mark.gpu
def test_gpu_acceptance_on_a_gpu(tmp_path):
    """On a CUDA machine: every check passes (ZeRO-3 and the third-party server may SKIP where
    DeepSpeed / torchvision are not installed)."""
    proc, report = _acceptance(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert all(status[n] == "PASS" for n in ("static_cache", "loop_latency", "train_eval", "fsdp"))
    assert status["zero3"] in ("PASS", "SKIP") and status["openai"] in ("PASS", "SKIP")


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_crossover_is_where_the_delta_changes_sign():
    crossover = _script("render_crossover").crossover
    assert crossover([(8, 0.4), (16, 0.2), (32, -0.2), (64, -0.5)]) == pytest.approx(24.0)
    assert crossover([(32, -0.2), (8, 0.4), (16, 0.2)]) == pytest.approx(24.0)  # any order
    assert crossover([(8, 0.4), (16, 0.1)]) is None      # rendering never pays in the range
    assert crossover([(8, -0.1), (16, -0.3)]) is None    # it always pays: below the range


def test_render_crossover_forces_round_lengths_and_measures_both_ways(tmp_path):
    out = tmp_path / "rc.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "render_crossover.py"), "--lengths",
                           "8,32", "--rounds", "2", "--repeats", "1", "--mixed", "8,32",
                           "--mixed-rounds", "4", "--threshold", "16", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = json.loads(out.read_text())["models"]["tiny_qwen3_vl"]
    for s, point in model["sweep"].items():
        for mode in ("text", "optical"):
            (run,) = point["runs"][mode]
            assert run["generated"] == 2 * int(s) and run["rounds"] == 2  # forced, no EOS
        (optical,) = point["runs"]["optical"]
        assert optical["pages"] >= 1 and optical["render_s"] > 0
        assert point["deltas"] == [optical["latency_s"] - point["runs"]["text"][0]["latency_s"]]
    both = model["both"]
    # rounds of 8, 32, 8, 32 tokens: with min_render_tokens=16 both 8-token rounds stay text,
    # the first 32-token one is rendered with the text kept before it (the last round is final)
    assert [r["text_rounds"] for r in both["threshold"]] == [2]
    assert [r["text_rounds"] for r in both["all"]] == [0]
    assert both["all"][0]["generated"] == both["threshold"][0]["generated"] == 8 + 32 + 8 + 32 + 4
    for s, point in model["sweep"].items():
        (t,), (o,) = point["runs"]["text"], point["runs"]["optical"]
        work = [sum(o[k] for k in ("render_s", "preprocess_s", "vision_s", "prefill_s"))
                - sum(t[k] for k in ("render_s", "preprocess_s", "vision_s", "prefill_s"))]
        assert point["work_deltas"] == pytest.approx(work)
        assert point["decode_deltas"] == pytest.approx([o["decode_s"] - t["decode_s"]])
    assert set(model["predicted"]) == {"Qwen3-VL-8B", "GLM-4.1V-9B"}
    assert all(set(p) == {"eager", "serving"} for p in model["predicted"].values())
    assert "crossover (tiny_qwen3_vl, CPU, measured, end to end)" in proc.stdout
    # logged to MLflow (the default local store under ./vtc-runs): one run per S with the
    # repeat's values, one of the cost model's curves, as `vtc-lab report` reads them
    from vtc_lab.tracking.report import collect_runs

    runs, _, _ = collect_runs(f"sqlite:///{tmp_path}/vtc-runs/mlflow.db", "perf-render-crossover")
    measured = {r.params["crossover.round_tokens"]: r for r in runs
                if "crossover.predicted" not in r.params}
    assert set(measured) == {"8", "32"}
    for s, point in model["sweep"].items():
        assert measured[s].curves["crossover/delta_s"] == [(0, pytest.approx(point["deltas"][0]))]
    [cost] = [r for r in runs if r.params.get("crossover.predicted") == "true"]
    assert any(k.startswith("crossover/predicted/Qwen3-VL-8B/") for k in cost.curves)


def test_preprocess_benchmark_runs_every_backbone_on_the_same_pages(tmp_path):
    """The per-backbone preprocessing benchmark, shrunk: one row per registered tiny family, the
    same pages for each, the vision tokens each processor's grid implies."""
    from vtc_lab.models.registry import get_backbone, tiny_backbone_names

    out = tmp_path / "pre.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "preprocess_backbones.py"), "--texts", "2",
                           "--rounds", "1", "--tracking", "off", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["backbone"]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == sorted(tiny_backbone_names())
    assert len({r["pages"] for r in rows.values()}) == 1
    for name, row in rows.items():
        assert row["patch_size"] == get_backbone(name).vision.patch_size
        assert row["ms_per_page"] > 0 and row["vision_tokens_per_page"] > 0
    assert rows["qwen3_vl"]["relative"] == 1.0
    # 14 px patches (GLM-4.1V) cut more tokens from the same pages than 16 px ones (Qwen3-VL)
    assert rows["glm4v"]["vision_tokens_per_page"] > rows["qwen3_vl"]["vision_tokens_per_page"]
    assert "| glm4v | Glm4vImageProcessorPil | 14 |" in proc.stdout
