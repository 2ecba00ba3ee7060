"""Page memory: RGB page images drawn straight into reused, already-mapped buffers.

Why this exists: on a long text the renderer's own arithmetic is a few milliseconds, but every
returned page is a fresh ~2 MB RGB image (Pillow stores RGB as 4 bytes per pixel), and glibc
hands large blocks back to the kernel once several pages are freed together, so the next text
page-faults all of that memory in again (measured: ~1,600 minor faults and ~6 ms per 16k-character
text on the dev VM, more than the drawing itself). Here a page is composed directly in its final
RGBX layout (`0xFF000000 | grey * 0x010101`, the bytes Pillow keeps for an RGB pixel) inside a
numpy buffer that Pillow maps as the image's storage (`map_buffer`, the primitive behind
`Image.frombuffer`), and buffers come from a small pool: a buffer is reused only once no image
maps it any more (its reference count is back to the pool's own), so pages the caller keeps are
never touched, and memory stays bounded (`MAX_POOLED` buffers).

The mapped image is an ordinary, writable RGB `Image` (mode "RGB", same pixels and `tobytes()`
as one built by `Image.merge`); Pillow operations that replace its storage simply drop the
mapping.

Pillow internals, and why they stay: `Image.core.map_buffer` + `Image.Image()._new` (the public
`Image.frombuffer` copies for mode RGB, so it cannot map RGBX memory as an RGB image), and
`sys.getrefcount` to know when no image maps a buffer any more. What they buy: 1.66x faster
rendering of 16k-character texts and 1.25x on MATH500 solutions (18.8 vs 31.2 ms and 1.38 vs
1.73 ms per text, `OMP_NUM_THREADS=1 python experiments/perf/pagemem_bench.py`, 2-core dev box
under a load average of ~13). All of it sits behind `_map` and `AVAILABLE`: the pool is used
only on a Pillow major version it was checked against (`TESTED_PILLOW`) and when the self-check
at import passes; otherwise the renderer falls back to public Pillow API (`Image.merge` of
Pillow-allocated bands: identical pixels, slower). tests/render/test_pagemem.py covers both.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from PIL import Image

MAX_POOLED = 12
"""Buffers kept for reuse (a 16k-character text needs 4-5 A4 pages; ~2 MB each at 72 dpi)."""
MAX_POOLED_BYTES = 48 << 20
"""And at most this much memory in them (high-dpi pages are tens of MB each: fewer are kept)."""
_WASTE = 1.5
"""A free buffer is reused for a page only if it is at most this many times the page's size
(a kept small page must not pin a full-page buffer)."""
_OPAQUE = np.uint32(0xFF000000)

TESTED_PILLOW = (11, 12, 13)
"""Pillow major versions whose private `map_buffer` / `_new` the pool was checked against
(pyproject allows pillow>=11). A newer major uses the public fallback until it is added here."""


def pillow_supported(version: str) -> bool:
    """True when Pillow `version` (e.g. "13.0.0") is one the pool was checked against."""
    try:
        return int(version.split(".")[0]) in TESTED_PILLOW
    except ValueError:
        return False


def grey_rgbx(grey: np.ndarray) -> np.ndarray:
    """uint32 RGBX pixels (little-endian R, G, B, 0xFF) of 8-bit grey levels."""
    return grey.astype(np.uint32) * np.uint32(0x010101) | _OPAQUE


def _map(buf: np.ndarray, width: int, height: int, stride: int = 0) -> Image.Image:
    """RGB image over `buf` (uint32 RGBX, rows `stride` pixels apart; 0 = width)."""
    core = Image.core.map_buffer(buf, (width, height), "raw", 0, ("RGB", 4 * stride, 1))
    im = Image.Image()._new(core)
    im.readonly = 0  # the buffer belongs to this image alone while it lives
    return im


def _check() -> bool:
    """True when `map_buffer` gives an RGB image over our RGBX bytes (checked once)."""
    if sys.byteorder != "little":
        return False
    try:
        buf = grey_rgbx(np.array([0, 7, 128, 255, 31, 200], np.uint8))
        im = _map(buf, 3, 2)
        ref = Image.merge("RGB", [Image.frombytes("L", (3, 2), bytes([0, 7, 128, 255, 31, 200]))] * 3)
        ok = im.mode == "RGB" and im.size == (3, 2) and im.tobytes() == ref.tobytes()
        wide = np.full((2, 5), 0xFFFFFFFF, np.uint32)
        wide[:, :3] = buf.reshape(2, 3)
        ok = ok and _map(wide.reshape(-1), 3, 2, 5).tobytes() == ref.tobytes()
        im.putpixel((0, 0), (1, 2, 3))  # writable like any page
        ok = ok and im.getpixel((0, 0)) == (1, 2, 3)
        # the pool's "free" test: a mapped buffer is referenced by its image, an unmapped one
        # only by the pool's list (and getrefcount's argument)
        probe = _Pool()
        probe._bufs.append(np.empty(6, np.uint32))
        mapped = _map(probe._bufs[0], 3, 2)
        ok = ok and not probe._free(0)
        del mapped
        return ok and probe._free(0)
    except Exception:  # any incompatibility: use the plain path
        return False


class _Pool:
    """Reusable flat uint32 buffers; a buffer is free when only the pool references it."""

    def __init__(self) -> None:
        self._bufs: list[np.ndarray] = []
        self._lock = threading.Lock()

    def _free(self, i: int) -> bool:
        # references: the pool's list and getrefcount's argument -> no image maps buffer i
        # (no loop variable may hold it while checking: enumerate's tuple would add one)
        return sys.getrefcount(self._bufs[i]) == 2

    def take(self, n: int) -> np.ndarray:
        """A flat uint32 array of exactly n elements (a view of a pooled buffer when one is free)."""
        with self._lock:
            bufs = self._bufs
            best = -1
            for i in range(len(bufs)):
                size = len(bufs[i])
                if n <= size <= n * _WASTE and self._free(i) and (best < 0 or size < len(bufs[best])):
                    best = i
            if best >= 0:
                return bufs[best][:n]
            buf = np.empty(n, np.uint32)
            # make room by forgetting free buffers (oldest first), else the oldest buffers (the
            # images using them keep them alive); a buffer alone over the byte cap is not kept
            while bufs and (len(bufs) >= MAX_POOLED
                            or sum(b.nbytes for b in bufs) + buf.nbytes > MAX_POOLED_BYTES):
                free = [i for i in range(len(bufs)) if self._free(i)]
                bufs.pop(free[0] if free else 0)
            if buf.nbytes <= MAX_POOLED_BYTES:
                bufs.append(buf)
            return buf[:n]


_POOL = _Pool()
AVAILABLE = pillow_supported(Image.__version__) and _check()


def new_page(width: int, height: int, stride: int | None = None) -> tuple[np.ndarray, Image.Image]:
    """A white (0xFFFFFFFF) page as a (height, stride) uint32 RGBX array and the width x height
    RGB image that shows its first `width` columns (`stride` >= width, default width): what is
    drawn into the array is what the image contains."""
    stride = width if stride is None else stride
    if stride < width:
        raise ValueError(f"stride {stride} < width {width}")
    flat = _POOL.take(stride * height)
    flat.fill(0xFFFFFFFF)
    return flat.reshape(height, stride), _map(flat, width, height, stride)


class _Scratch(threading.local):
    """Per-thread work arrays reused across pages (grown geometrically, never shrunk): the
    scatter's per-pixel index arrays are a few hundred KB each, big enough that fresh ones would
    be fresh mmaps, i.e. page faults on every page."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, str], np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type) -> np.ndarray:
        key = (name, np.dtype(dtype).str)
        arr = self.arrays.get(key)
        if arr is None or len(arr) < n:
            arr = self.arrays[key] = np.empty(max(n, 2 * len(arr) if arr is not None else 0, 4096),
                                              dtype)
        return arr[:n]


scratch = _Scratch()
"""`scratch.get(name, n, dtype)`: a reusable length-n work array (contents undefined)."""
