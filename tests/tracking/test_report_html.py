"""report.html: one self-contained page (plots embedded, values escaped) for MLflow's viewer."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from PIL import Image

from vtc_lab.tracking.report_html import to_html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.images: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def test_page_embeds_each_plot_and_escapes_every_value(tmp_path):
    plot = tmp_path / "accuracy_vs_samples.png"
    Image.new("RGB", (3, 2), (255, 0, 0)).save(plot)
    rows = [{"run": "<b>optical</b>", "status": "FINISHED", "run_id": "0123456789abcdef",
             "memory": "optical", "eval/toy/memory/accuracy": 0.123456},
            {"run": "text", "status": "FINISHED", "run_id": "fedcba9876543210",
             "memory": "text", "eval/toy/memory/accuracy": None}]
    page = to_html("Report: experiment toy", "2 runs", rows, [plot], {"k": "a & b"})
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.cells[:5] == ["run", "status", "run_id", "memory", "eval/toy/memory/accuracy"]
    assert parsed.cells[5:10] == ["<b>optical</b>", "FINISHED", "01234567", "optical", "0.1235"]
    assert parsed.cells[10:] == ["text", "FINISHED", "fedcba98", "text", ""]
    assert "<b>optical</b>" not in page  # escaped, not markup
    (src,) = parsed.images
    data = re.fullmatch(r"data:image/png;base64,(.+)", src).group(1)
    assert base64.b64decode(data) == plot.read_bytes()  # the page needs no other file
    assert "a &amp; b" in page
