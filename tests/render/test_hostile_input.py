"""Hostile texts and files: form feeds that ask for 20,000 pages, bytes that are not UTF-8, two
inputs with the same name. Nothing may allocate without bound, crash, or overwrite silently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.render import text_tokenizer
from vtc_lab.render import RenderConfig, render_with_layout
from vtc_lab.data.render_app import run_render as _run_render

FORM_FEEDS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # fail fast instead of eating the box
from vtc_lab.render import RenderConfig, render_with_layout
cfg = RenderConfig() if sys.argv[1] == "default" else RenderConfig(max_pages=None)
res = render_with_layout("\\f" * 20_000, cfg, boxes=False)
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's over exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(len(res.images), res.truncated, len({id(im) for im in res.images}), hwm // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("cap", ["default", "none"])
def test_twenty_kilobytes_of_form_feeds_stay_in_bounded_memory(cap) -> None:
    """Was: the OOM killer at 22 GB. Default: capped at 64 pages and flagged; cap off: 20,000
    pages that share one blank image, so peak memory does not grow with them."""
    proc = subprocess.run([sys.executable, "-c", FORM_FEEDS, cap], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    pages, truncated, distinct, rss_mb = proc.stdout.split()
    if cap == "default":
        assert (int(pages), truncated) == (64, "True")
    else:
        assert (int(pages), truncated) == (20_000, "False")
    assert int(distinct) <= 2  # the shared blank page (+ the last page, cropped differently)
    assert int(rss_mb) < 400, f"peak RSS {rss_mb} MB"



def run_render(cfg) -> dict:
    """The stage function with the tokenizer the CLI would pick for `cfg.tokenizer`."""
    return _run_render(cfg, text_tokenizer(cfg))

def test_page_cap_is_on_by_default_and_counted() -> None:
    res = render_with_layout("word\f" * 100)
    assert len(res.images) == RenderConfig().max_pages == 64 and res.truncated
    assert len(render_with_layout("word\f" * 100, RenderConfig(max_pages=None)).images) == 100


def _cfg(tmp_path: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose(config_name="render", overrides=[f"output_root={tmp_path}", "progress=false",
                                                       "tracking=off", *overrides])
    return OmegaConf.to_object(raw)


def test_render_reads_non_utf8_bytes_with_the_builders_rule(tmp_path) -> None:
    text_file = tmp_path / "latin1.txt"
    text_file.write_bytes("Caf\u00e9 na\u00efve: x = 1.".encode("latin-1"))  # 2 invalid bytes
    m = run_render(_cfg(tmp_path, f"file={text_file}"))
    assert m["render/texts"] == 1 and m["render/invalid_utf8"] == 2
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(b'{"solution": "ok \xff"}\n{"solution": "fine"}\n{"solution": "\\ud800 lone"}\n')
    m = run_render(_cfg(tmp_path, f"file={lines}"))
    assert m["render/texts"] == 3 and m["render/invalid_utf8"] == 2
    report = json.loads((Path(m["output_dir"]) / "report.json").read_text())
    assert report["metrics"]["render/invalid_utf8"] == 2


def test_inputs_with_the_same_stem_never_share_pages(tmp_path) -> None:
    a, b = tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text("short")
    b.write_text("page one\fpage two\fpage three")
    ma = run_render(_cfg(tmp_path, f"file={a}", "save_images=true"))
    mb = run_render(_cfg(tmp_path, f"file={b}", "save_images=true"))
    assert ma["output_dir"] != mb["output_dir"]
    assert len(list((Path(ma["output_dir"]) / "pages").glob("*.png"))) == ma["render/pages"] == 1
    assert len(list((Path(mb["output_dir"]) / "pages").glob("*.png"))) == mb["render/pages"] == 3
    b.write_text("now one page")  # the same file again, shorter: no stale pages left behind
    mb = run_render(_cfg(tmp_path, f"file={b}", "save_images=true"))
    assert len(list((Path(mb["output_dir"]) / "pages").glob("*.png"))) == mb["render/pages"] == 1
