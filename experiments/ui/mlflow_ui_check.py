"""Open a toy sweep's experiment in the MLflow UI in a real (headless) browser, as a user does.

    python experiments/ui/mlflow_ui_check.py --root /tmp/ui-demo            # build + check
    python experiments/ui/mlflow_ui_check.py --root /tmp/ui-demo --screenshots docs/img

Builds (unless `<root>/mlflow.db` exists) a tiny two-job toy sweep (`vtc-lab train
experiment=toy` at 16 steps, 8 evaluation problems: ~10 min on 2 busy CPU cores), starts
`mlflow server` on a free 127.0.0.1 port, opens the link vtc-lab prints at the end of a sweep
(runs table, headline view) in Debian's chromium through Playwright, and asserts: the runs
table (not the GenAI overview) with rows named `optical` and `text`, the headline metric column
`eval/toy/memory/accuracy` visible, and on the chart view one chart of that metric holding both
runs. `--screenshots DIR` saves `mlflow_runs_table.png` and `mlflow_chart_overlay.png` there.
The slow test tests/tracking/test_mlflow_ui.py runs `check` on a sweep it builds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

CHROMIUM = "/usr/bin/chromium"
METRIC = "eval/toy/memory/accuracy"
SWEEP = ["experiment=toy", "data.limit=64", "optim.max_steps=16", "optim.batch_size=4",
         "optim.val_check_interval=8", "optim.checkpoint_every_n_steps=16",
         "optim.val_max_samples=8", "optim.log_every_n_steps=2", "evaluator.limit=8",
         "evaluator.loop.max_rounds=2", "evaluator.loop.max_new_tokens=16",
         "evaluator.loop.batch_size=8", "evaluator.log_images=1", "export=false"]


def build_sweep(root: Path) -> None:
    """The tiny toy sweep into `<root>/mlflow.db` (skipped when the store exists)."""
    if (root / "mlflow.db").is_file():
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    cmd = [sys.executable, "-m", "vtc_lab.cli.main", "train", *SWEEP, f"output_root={root}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3000)
    if res.returncode != 0:
        raise RuntimeError(f"toy sweep failed:\n{(res.stdout + res.stderr)[-3000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path, start_timeout_s: float = 600) -> Iterator[str]:
    """`mlflow server` over `<root>/mlflow.db` on a free port; yields its base URL. The long
    start timeout is for a loaded machine (the server's imports took minutes on 2 busy cores)."""
    port = _free_port()
    log = open(root / "ui-server.log", "a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no telemetry: with no network its sender can hold the process long after it is done
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_DISABLE_TELEMETRY": "true",
             "DO_NOT_TRACK": "true"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mlflow server did not start: "
                                       + (root / "ui-server.log").read_text()[-2000:])
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this function started
        proc.wait(timeout=30)
        log.close()


def sweep_link(root: Path, base: str) -> str:
    """The link `vtc-lab train` prints at the end of the sweep, for the server at `base`."""
    from mlflow.tracking import MlflowClient

    from vtc_lab.tracking.ui_view import VIEW_ID, VIEW_TAG_PREFIX, experiment_url, publish_runs_view

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("toy")
    if VIEW_TAG_PREFIX + VIEW_ID not in exp.tags:  # a store from before the sweep saved it
        children = [r for r in client.search_runs([exp.experiment_id])
                    if "mlflow.parentRunId" in r.data.tags]
        publish_runs_view(client, exp.experiment_id, children)
    return experiment_url(base, exp.experiment_id)


def check(url: str, screenshots: Optional[Path] = None) -> dict[str, object]:
    """Open `url` and assert what a user must see; returns what was found."""
    from playwright.sync_api import sync_playwright

    found: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url)
            # the runs table, not the GenAI overview
            page.get_by_role("link", name="optical", exact=True).first.wait_for(timeout=60000)
            text = page.inner_text("body")
            assert "Overview" not in text.split("Runs")[0][-200:] or "/runs" in page.url
            found["url"] = page.url
            assert "/overview" not in page.url, page.url
            rows = page.locator("[role=row]")
            names = {n for n in ("optical", "text")
                     if page.get_by_role("link", name=n, exact=True).count()}
            found["run_names"] = sorted(names)
            assert names == {"optical", "text"}, names
            header = page.get_by_role("columnheader").all_inner_texts()
            found["columns"] = header
            assert any(METRIC in h for h in header), header
            found["rows"] = rows.count()
            if screenshots:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshots / "mlflow_runs_table.png"))
            # the chart view (the runs page's CHART mode), filtered to the headline metric: one
            # chart, both runs in its legend (they share the key, so the chart overlays them)
            sep = "&" if "?" in page.url else "?"
            page.goto(page.url + sep + "compareRunsMode=CHART")
            search = page.get_by_placeholder("Search metric charts")
            search.wait_for(timeout=60000)
            search.fill(METRIC)
            page.wait_for_timeout(5000)
            plots = page.locator(".js-plotly-plot")
            found["charts"] = plots.count()
            assert plots.count() >= 1, "no chart of " + METRIC
            legend = plots.first.locator("xpath=ancestor::*[contains(., 'optical') and contains(., 'text')][1]")
            found["chart_legend"] = legend.count() > 0
            assert legend.count() > 0, f"the {METRIC} chart does not name both runs"
            if screenshots:
                page.screenshot(path=str(screenshots / "mlflow_chart_overlay.png"))
        finally:
            browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="output_root of the sweep")
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    build_sweep(root)
    with mlflow_server(root) as base:
        print(check(sweep_link(root, base), args.screenshots))


if __name__ == "__main__":
    main()
