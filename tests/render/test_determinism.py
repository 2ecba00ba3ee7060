"""Same text + config -> byte-identical pixels, in this process and in a fresh one."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from vtc_lab.render import RenderConfig, render_text
from vtc_lab.render.renderer import faces_for

TEXT = ("Let $f(x) = \\frac{x^2+1}{x-3}$.  Then\n\tf'(x) = ...\n" + "long reasoning " * 300
        + "\n\\boxed{42} — ünïcödé ✓ 中文")


def _digest(text: str, cfg: RenderConfig) -> str:
    h = hashlib.sha256()
    for im in render_text(text, cfg):
        h.update(repr(im.size).encode())
        h.update(im.tobytes())
    return h.hexdigest()


def test_same_bytes_twice_and_after_cache_growth() -> None:
    cfg = RenderConfig()
    first = _digest(TEXT, cfg)
    render_text("".join(chr(c) for c in range(0x20, 0x250)), cfg)  # grow the glyph atlas
    assert _digest(TEXT, cfg) == first


def test_same_bytes_in_a_fresh_process() -> None:
    code = ("import sys; sys.path.insert(0, %r); from test_determinism import _digest, TEXT; "
            "from vtc_lab.render import RenderConfig; print(_digest(TEXT, RenderConfig()))"
            % str(__import__("pathlib").Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(TEXT, RenderConfig())


def test_font_is_loaded_once_per_config() -> None:
    cfg = RenderConfig(font_size=11, line_height=12)
    assert faces_for(cfg) is faces_for(RenderConfig(font_size=11, line_height=12))
    assert faces_for(cfg)[0] is not faces_for(RenderConfig(font_size=12, line_height=12))[0]


def test_different_configs_give_different_pixels() -> None:
    assert _digest("hello world", RenderConfig()) != _digest("hello world", RenderConfig(dpi=96))


def test_render_package_imports_no_torch() -> None:
    code = ("import sys, vtc_lab.render as r; r.render_text('x'); r.qwen_tokenizer(); "
            "print('torch' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
