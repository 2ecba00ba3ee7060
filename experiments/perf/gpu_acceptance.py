"""GPU acceptance: every GPU path of vtc-lab in one command, one PASS/FAIL/SKIP line per check.

    python experiments/perf/gpu_acceptance.py                # one CUDA GPU, <= ~8 minutes
    python experiments/perf/gpu_acceptance.py --dry-run      # the same steps on the CPU, tiny

Why one script: the GPU paths (compiled static-cache decoding, paper-scale latency, bf16
training with the evaluator, FSDP and ZeRO-3 with a resume, `engine=openai` against a
third-party server) are where a CPU-only test suite cannot look, and a GPU is lent for minutes;
one prepared command spends them on checks, not on typing. Checks:

  static_cache   greedy tokens of HFEngine with a static (compiled on CUDA) cache equal the
                 eager engine's, on the tiny model and on an 8B-dimension random model; step times
  loop_latency   loop_latency.py: optical vs text at Qwen3-VL-8B / GLM-4.1V dimensions (random
                 weights), batch 1 and 16, per-term timings (prefill, decode, vision, render)
  train_eval     `vtc-lab train trainer=gpu` (bf16) with the evaluator, then `vtc-lab eval
                 device=cuda` of the run
  fsdp           `trainer=fsdp` on one GPU, 4 steps, then resumed to 6 from the sharded checkpoint
  zero3          the same with `trainer=deepspeed_zero3` when DeepSpeed imports (else SKIP)
  openai         `vtc-lab eval engine=openai` against `transformers serve` of the trained export
                 when it can load the model (torchvision present; else SKIP)

`--dry-run` runs each check on the CPU with tiny models and few steps (FSDP as `fsdp_cpu` on one
process; DeepSpeed needs CUDA: SKIP; without a third-party server the openai check runs against
`vtc-lab serve`, labelled as a stand-in). Figures go to `<out>/gpu_acceptance.json`; the exit
status is 1 when any check FAILs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VTC = str(Path(sys.executable).with_name("vtc-lab"))
CHECKS = ("static_cache", "loop_latency", "train_eval", "fsdp", "zero3", "openai")


class Skip(Exception):
    """A check that cannot run here (reason in the message)."""


def env() -> dict:
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


def run(cmd: list[str], cwd: Path, timeout: float, log: Path) -> str:
    """Run a command; its output goes to `log`; a non-zero exit raises with the output's tail."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    log.write_text(" ".join(cmd) + "\n\n" + out)
    if proc.returncode:
        tail = out.strip().splitlines()[-1] if out.strip() else ""
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` exited {proc.returncode}: {tail} "
                           f"(full output: {log})")
    return out


class Acceptance:
    def __init__(self, args):
        self.args, self.dry = args, args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.out = Path(args.out).resolve()
        self.train_run: Path | None = None

    # ---- static cache ----
    def static_cache(self) -> dict:
        import torch

        from vtc_lab.eval.benchmarks import Problem
        from vtc_lab.infer.config import LoopConfig
        from vtc_lab.infer.engine import HFEngine
        from vtc_lab.infer.loop import run_loop
        from vtc_lab.models import ModelConfig, load_backbone
        from vtc_lab.render import RenderConfig

        sys.path.insert(0, str(HERE))
        from loop_latency import model_config

        problems = [Problem(id="a", question="What is $1+1$?", gold="2", benchmark="math500")]
        cfg = LoopConfig(mode="optical", max_rounds=2, max_new_tokens=16 if self.dry else 48,
                         do_sample=False, batch_size=1)
        figures, same = {}, True
        models = {"tiny": ModelConfig(),
                  "8b_dims": model_config("qwen3_vl", "cpu" if self.dry else "paper", 4096)}
        for name, mc in models.items():
            with torch.device(self.device):
                backbone = load_backbone(mc)
            backbone.model.to(self.device).eval()
            outs = {}
            for mode in ("eager", "static"):
                engine = HFEngine(backbone, reuse_vision=False, reuse_prefix=False,
                                  static_cache=mode == "static")
                run_loop(engine, problems, cfg, RenderConfig(), None, progress=False)  # warm-up
                engine.stats = type(engine.stats)()
                recs = run_loop(engine, problems, cfg, RenderConfig(), None, progress=False)
                tokens = [(r.text, r.generated_tokens) for rec in recs for r in rec.rounds]
                steps = max(1, engine.stats.generated_tokens)
                outs[mode] = tokens
                figures[f"{name}_{mode}_step_ms"] = 1e3 * engine.stats.decode_s / steps
                figures[f"{name}_generated_tokens"] = engine.stats.generated_tokens
            figures[f"{name}_identical"] = outs["eager"] == outs["static"]
            same &= outs["eager"] == outs["static"] and figures[f"{name}_generated_tokens"] > 0
            del backbone
        figures["passed"] = same
        return figures

    # ---- paper-scale (dry: CPU-scale) loop latency ----
    def loop_latency(self) -> dict:
        js = self.out / "loop_latency.json"
        cmd = [sys.executable, str(HERE / "loop_latency.py"), "--models", "qwen3_vl,glm4v",
               "--reuse", "on", "--tracking", "off", "--json", str(js), "--device", self.device]
        cmd += (["--scale", "cpu", "--total", "64", "--round", "32", "--batch", "1,2"] if self.dry
                else ["--scale", "paper", "--total", "256", "--round", "128", "--batch", "1,16"])
        run(cmd, self.out, self.args.timeout, self.out / "loop_latency.log")
        data = json.loads(js.read_text())
        terms = ("prefill_s", "decode_s", "vision_s", "render_s", "preprocess_s")
        figures, ok = {}, bool(data["points"])
        for p in data["points"]:
            key = f"{p['model']}_T{p['total']}_B{p['batch']}"
            figures[f"{key}_speedup"] = p["speedup"]
            for mode in ("text", "optical"):
                figures[f"{key}_{mode}_latency_s"] = p[mode]["latency_s"]
                for term in terms:
                    figures[f"{key}_{mode}_{term}"] = p[mode][term]
            ok &= all(p["optical"][t] > 0 for t in ("prefill_s", "decode_s", "vision_s"))
            ok &= p["optical"]["images"] > 0 and p["text"]["generated_tokens"] == \
                p["optical"]["generated_tokens"]
        figures["passed"] = ok
        return figures

    # ---- training with the evaluator, then eval ----
    def _train(self, name: str, trainer: list[str], steps: int, extra: list[str] = ()) -> str:
        """`vtc-lab train` into run dir `<out>/<name>/run`; every run shares one output root,
        so the tiny dataset is built once."""
        root = self.out / name
        root.mkdir(parents=True, exist_ok=True)
        cmd = [VTC, "train", f"output_root={self.out / 'runs'}", f"run_dir={root}/run",
               "data.limit=8", "optim.batch_size=2", f"optim.max_steps={steps}",
               "optim.log_every_n_steps=1", "optim.checkpoint_every_n_steps=2", "progress=false",
               f"hydra.run.dir={root}/hydra", *trainer, *extra]
        return run(cmd, root, self.args.timeout, root / f"train_{steps}.log")

    def train_eval(self) -> dict:
        trainer = ["trainer=cpu"] if self.dry else ["trainer=gpu", "trainer.num_workers=2"]
        self._train("train", trainer, 4, ["evaluator=default", "evaluator.limit=2",
                                       "evaluator.loop.max_new_tokens=8",
                                       "evaluator.loops=[optical,none]",
                                       "optim.val_check_interval=2", "optim.val_max_samples=2"])
        self.train_run = self.out / "train" / "run"
        export = self.train_run / "export"
        metrics = self._eval(self.out / "train" / "eval", [f"device={self.device}"])
        accuracy = {k: v for k, v in metrics.items() if k.endswith("/accuracy")}
        return {"export": str(export), "eval_metrics": accuracy,
                "passed": export.is_dir() and bool(accuracy)}

    def _eval(self, root: Path, extra: list[str]) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        run([VTC, "eval", f"train_run={self.train_run}", "benchmark.limit=1", "loop.max_rounds=2",
             "loop.max_new_tokens=8", "tracking=off", "progress=false", "grade_workers=1",
             f"output_root={root}", f"hydra.run.dir={root}/hydra", *extra],
            root, self.args.timeout, root / "eval.log")
        found = sorted(root.rglob("metrics.json"))
        if not found:
            raise RuntimeError(f"eval wrote no metrics.json under {root}")
        return json.loads(found[-1].read_text())

    # ---- sharded training, resumed ----
    def _sharded(self, name: str, trainer: list[str]) -> dict:
        root = self.out / name
        if root.exists():
            shutil.rmtree(root)
        self._train(name, trainer, 4)
        out = self._train(name, trainer, 6)  # the same run dir: resumes from last.ckpt
        last = root / "run" / "checkpoints" / "last.ckpt"
        resumed = "Restoring states from the checkpoint path" in out
        import torch

        meta = last / "meta.pt" if last.is_dir() else last
        step = None
        if meta.is_file():
            step = torch.load(meta, map_location="cpu", weights_only=False).get("global_step")
        return {"resumed": resumed, "global_step": step, "checkpoint": str(last),
                "sharded_files": sorted(p.name for p in last.iterdir()) if last.is_dir() else [],
                "passed": resumed and (step == 6 or (step is None and last.is_dir()))}

    def fsdp(self) -> dict:
        return self._sharded("fsdp", ["trainer=fsdp_cpu", "trainer.devices=1"] if self.dry
                             else ["trainer=fsdp", "trainer.devices=1"])

    def zero3(self) -> dict:
        if self.dry:
            raise Skip("DeepSpeed runs only on CUDA GPUs (Lightning's DeepSpeedStrategy)")
        if importlib.util.find_spec("deepspeed") is None:
            raise Skip("deepspeed is not installed (pip install 'vtc-lab[deepspeed]')")
        return self._sharded("zero3", ["trainer=deepspeed_zero3", "trainer.devices=1"])

    # ---- engine=openai against a server ----
    def openai(self) -> dict:
        if self.train_run is None:
            raise Skip("needs train_eval's export (it did not run)")
        export = self.train_run / "export"
        port = free_port()
        third_party = third_party_server()
        if third_party is None:
            if not self.dry:
                raise Skip("no third-party OpenAI server that loads Qwen3-VL here: `transformers "
                           "serve` needs fastapi, uvicorn and torchvision")
            server = [VTC, "serve", "model=local", f"model.path={export}", f"port={port}"]
            label = "vtc-lab serve (stand-in: no third-party server on this machine)"
        else:
            server = [*third_party, "--port", str(port), str(export)]
            label = "transformers serve"
        log = (self.out / "openai_server.log").open("w")
        proc = subprocess.Popen(server, cwd=self.out, env=env(), stdout=log, stderr=log)
        try:
            wait_for(f"http://127.0.0.1:{port}/v1/models", proc, self.args.timeout)
            metrics = self._eval(self.out / "openai_eval", [
                "engine=openai", f"engine.base_urls=[http://127.0.0.1:{port}/v1]"])
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        samples = {k: v for k, v in metrics.items() if k.endswith("/num_samples")}
        return {"server": label, "num_samples": samples,
                "passed": bool(samples) and all(v > 0 for v in samples.values())}


def third_party_server() -> list[str] | None:
    """`transformers serve` when it can load a Qwen3-VL export (its video processor needs
    torchvision; the server needs fastapi and uvicorn)."""
    exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    needs = ("torchvision", "fastapi", "uvicorn")
    if not Path(exe).exists() or any(importlib.util.find_spec(m) is None for m in needs):
        return None
    return [exe, "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s")


HEADLINE = {"static_cache": ("identical", "step_ms"), "loop_latency": ("speedup",)}
"""Per check, the figures its PASS/FAIL line shows (all are in the JSON)."""


def summary(name: str, figures: dict) -> str:
    wanted = HEADLINE.get(name)
    keys = [k for k in figures if wanted is None or any(w in k for w in wanted)]
    return ", ".join(f"{k}={_fmt(figures[k])}" for k in keys)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="every check on the CPU with tiny models (no GPU needed)")
    parser.add_argument("--out", default="vtc-runs/gpu-acceptance", help="working directory")
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per command")
    args = parser.parse_args()
    only = args.only.split(",")
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        parser.error(f"--only: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_acceptance: no CUDA device here; run with --dry-run for the CPU rehearsal",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1 if args.dry_run else min(8, os.cpu_count() or 1))
    acc = Acceptance(args)
    acc.out.mkdir(parents=True, exist_ok=True)
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    report = {"dry_run": args.dry_run, "device": device, "torch": torch.__version__, "checks": []}
    print(f"# gpu_acceptance on {device}, torch {torch.__version__}, out {acc.out}", flush=True)
    failed = False
    for name in CHECKS:
        if name not in only:
            continue
        start = time.monotonic()
        try:
            figures = getattr(acc, name)()
            status = "PASS" if figures.pop("passed") else "FAIL"
            detail = summary(name, figures)
        except Skip as exc:
            status, figures, detail = "SKIP", {}, str(exc)
        except Exception as exc:  # noqa: BLE001 - one check's failure must not stop the others
            status, figures, detail = "FAIL", {}, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - start
        failed |= status == "FAIL"
        report["checks"].append(dict(name=name, status=status, seconds=seconds, detail=detail,
                                     figures=figures))
        print(f"{status} {name} ({seconds:.0f} s): {detail}", flush=True)
        (acc.out / "gpu_acceptance.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"# wrote {acc.out / 'gpu_acceptance.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
