"""The reference renderer (reportlab -> PDF -> poppler/pdfium -> PNG), for parity tests and the
benchmark only. Not a dependency of vtc_lab: it needs reportlab (extra `dev`) and either
`pdftoppm` (apt: poppler-utils) or `pypdfium2` (pip, dev-only).

It reproduces the VTC-R1 / Glyph pipeline at its published settings, written from its described
behaviour: the whole text is one reportlab Paragraph (DejaVu Sans 9 pt, leading 10, left
aligned) in a SimpleDocTemplate on A4 with 10 pt margins; `&`, `<`, `>` escaped, soft hyphens and
zero-width spaces removed, runs of >= 2 spaces turned into `&nbsp;`s, newlines into `<br/>`;
pages rasterised at 72 dpi; each page cropped to its last ink column + 1 + `margin_x` and the
last page to its last ink row + `margin_y` (the row's index: no +1, unlike the width) (ink =
grey differs from the corner by > 5).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

FONT_DIR = Path(__file__).resolve().parents[2] / "vtc_lab" / "render" / "fonts"
_REGISTERED: set[str] = set()


def _font(font_path: str) -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    name = "ref_" + Path(font_path).stem
    if name not in _REGISTERED:
        pdfmetrics.registerFont(TTFont(name, font_path))
        _REGISTERED.add(name)
    return name


def markup(text: str) -> str:
    """The reference's text preprocessing, as paragraph markup."""
    text = text.replace("\xad", "").replace("\u200b", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = escape(text)
    text = re.sub(r" {2,}", lambda m: "&nbsp;" * len(m.group()), text)
    return text.replace("\n", "<br/>")


def _style(font_path: str, font_size: float, leading: float):
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.styles import ParagraphStyle

    return ParagraphStyle(name="ref", fontName=_font(font_path), fontSize=font_size,
                          leading=leading, alignment=TA_LEFT)


def reference_lines(text: str, font_path: str = str(FONT_DIR / "DejaVuSans.ttf"),
                    font_size: float = 9.0, leading: float = 10.0,
                    width: float = 595 - 2 * 10 - 2 * 6) -> list[str]:
    """The lines reportlab breaks `text` into (no-break spaces shown as spaces, ends stripped)."""
    from reportlab.platypus import Paragraph

    para = Paragraph(markup(text), _style(font_path, font_size, leading))
    para.wrap(width, 1e9)
    bl = para.blPara
    out = []
    for line in bl.lines:
        if bl.kind == 0:
            s = " ".join(line[1])
        else:
            s = "".join(getattr(w, "text", "") for w in line.words)
        out.append(s.replace("\xa0", " ").strip(" "))
    return out


def reference_pdf(text: str, font_path: str = str(FONT_DIR / "DejaVuSans.ttf"),
                  font_size: float = 9.0, leading: float = 10.0,
                  page: tuple[float, float] = (595, 842), margin: float = 10.0) -> bytes:
    """The reference PDF bytes."""
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=page, leftMargin=margin, rightMargin=margin,
                            topMargin=margin, bottomMargin=margin)
    doc.build([Paragraph(markup(text), _style(font_path, font_size, leading))])
    return buf.getvalue()


def rasterise(pdf: bytes, dpi: int = 72, engine: str = "pdftoppm") -> list[Image.Image]:
    """PDF -> RGB pages. `pdftoppm`: what the reference's pdf2image.convert_from_bytes does by
    default - `pdfinfo` for the page count, then `pdftoppm` writing PPM files, loaded with PIL.
    `pdfium`: in process (a faster stand-in where poppler is missing)."""
    if engine == "pdfium":
        import pypdfium2 as pdfium

        doc = pdfium.PdfDocument(pdf)
        return [doc[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(doc))]
    if shutil.which("pdftoppm") is None:
        raise RuntimeError("pdftoppm not found (apt-get install poppler-utils) - or use engine='pdfium'")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(pdf)
        if shutil.which("pdfinfo"):
            info = subprocess.run(["pdfinfo", str(src)], check=True, capture_output=True, text=True)
            assert "Pages:" in info.stdout
        subprocess.run(["pdftoppm", "-r", str(dpi), str(src), str(Path(tmp) / "p")], check=True)
        files = sorted(Path(tmp).glob("p-*.ppm"), key=lambda p: int(p.stem.split("-")[-1]))
        return [Image.open(f).convert("RGB") for f in files]


def crop(pages: list[Image.Image], margin_x: float = 10, margin_y: float = 10,
         dpi: int = 72) -> list[Image.Image]:
    """The reference's auto-crop (every page's width, the last page's height)."""
    out = []
    for i, img in enumerate(pages):
        grey = np.asarray(img.convert("L")).astype(np.int16)
        mask = np.abs(grey - np.median(grey[:2, :2])) > 5
        right, lower = img.width, img.height
        cols = np.flatnonzero(mask.any(axis=0))
        if cols.size:
            right = min(img.width, int(cols[-1]) + 1 + round(margin_x * dpi / 72))
        if i == len(pages) - 1:
            rows = np.flatnonzero(mask.any(axis=1))
            if rows.size:
                # the last ink row's index + margin: the reference counts no +1 here
                lower = min(img.height, int(rows[-1]) + round(margin_y * dpi / 72))
        out.append(img.crop((0, 0, right, lower)))
    return out


def reference_render(text: str, dpi: int = 72, engine: str = "pdftoppm", **kw) -> list[Image.Image]:
    """The whole reference pipeline: text -> PDF -> pages -> cropped pages."""
    return crop(rasterise(reference_pdf(text, **kw), dpi=dpi, engine=engine), dpi=dpi)
