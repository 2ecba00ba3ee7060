"""Page memory pool: pages drawn into reused buffers must behave like independent RGB images."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vtc_lab.render import RenderConfig, render_text
from vtc_lab.render import pagemem

pytestmark = pytest.mark.skipif(not pagemem.AVAILABLE, reason="this Pillow cannot map RGB buffers")


def _digest(images):
    return [hashlib.sha256(im.tobytes()).hexdigest() for im in images]


def test_kept_pages_are_never_overwritten_by_later_renders():
    texts = [f"text {i}: " + ("lorem ipsum dolor sit amet " * (40 + 30 * i)) for i in range(6)]
    kept = [render_text(t) for t in texts]
    before = [_digest(p) for p in kept]
    for _ in range(3):  # churn the pool with other texts of every size while the pages live
        for t in reversed(texts):
            render_text(t[::-1])
    assert [_digest(p) for p in kept] == before
    # and a fresh render of the same text still gives the same pixels
    assert [_digest(render_text(t)) for t in texts] == before


def test_pool_buffers_are_reused_and_bounded():
    text = "word " * 4000
    render_text(text)
    first = {id(b) for b in pagemem._POOL._bufs}
    for _ in range(20):
        render_text(text)
    assert len(pagemem._POOL._bufs) <= pagemem.MAX_POOLED
    assert first <= {id(b) for b in pagemem._POOL._bufs}  # the same buffers serve again


def test_mapped_page_is_an_ordinary_writable_rgb_image():
    page = render_text("Hello, world! " * 50)[0]
    assert page.mode == "RGB"
    ref = page.copy()  # a Pillow-owned copy
    assert page.tobytes() == ref.tobytes()
    ImageDraw.Draw(page).rectangle((0, 0, 4, 4), fill=(255, 0, 0))
    assert page.getpixel((2, 2)) == (255, 0, 0)
    assert ref.getpixel((2, 2)) != (255, 0, 0)  # the copy did not share the buffer
    arr = np.asarray(page)
    assert arr.shape == (page.height, page.width, 3) and (arr[0:5, 0:5] == [255, 0, 0]).all()


def test_same_pixels_as_the_pillow_allocated_path():
    text = "Let $x^2 + y^2 = 1$. " * 300
    cfg = RenderConfig()
    fast = render_text(text, cfg)
    pagemem.AVAILABLE = False
    try:
        slow = render_text(text, cfg)
    finally:
        pagemem.AVAILABLE = True
    assert [im.size for im in fast] == [im.size for im in slow]
    assert _digest(fast) == _digest(slow)
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in slow)


def test_pool_memory_is_capped_for_high_dpi_pages():
    cfg = RenderConfig(dpi=300)  # ~35 MB per RGBX A4 page
    render_text("high resolution " * 2000, cfg)
    pooled = sum(b.nbytes for b in pagemem._POOL._bufs)
    assert pooled <= pagemem.MAX_POOLED_BYTES
    assert len(pagemem._POOL._bufs) <= pagemem.MAX_POOLED


def test_concurrent_renders_in_threads_match_sequential_ones():
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"thread text {i} " + ("alpha beta gamma " * (60 * (i % 5 + 1))) for i in range(24)]
    sequential = [_digest(render_text(t)) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda t: _digest(render_text(t)), texts))
    assert concurrent == sequential


def test_pool_is_used_only_on_a_checked_pillow_major():
    assert pagemem.pillow_supported("13.0.0") and pagemem.pillow_supported("11.3.1")
    assert not pagemem.pillow_supported("14.0.0") and not pagemem.pillow_supported("dev")
    assert pagemem.AVAILABLE == (pagemem.pillow_supported(Image.__version__) and pagemem._check())


def test_an_unchecked_pillow_gets_the_public_fallback_with_the_same_pixels():
    """A fresh process that reports an unknown Pillow major: no pool, identical pages."""
    import subprocess
    import sys

    code = ("import hashlib, PIL.Image; PIL.Image.__version__ = '99.0.0'\n"
            "from vtc_lab.render import pagemem, render_text\n"
            "pages = render_text('Let $x^2 + y^2 = 1$. ' * 300)\n"
            "print(pagemem.AVAILABLE, [hashlib.sha256(p.tobytes()).hexdigest() for p in pages])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = _digest(render_text("Let $x^2 + y^2 = 1$. " * 300))
    assert out.stdout.strip() == f"False {expected}"
