"""`report.html`: the report as one self-contained page, for MLflow's artifact viewer.

MLflow's artifact viewer shows a `.md` file as plain text (its image links stay text) but renders
an `.html` file as a page. Each plot is embedded as a base64 `data:` image, so the page needs no
other artifact (relative links would not resolve: the viewer fetches artifacts by query URL).
Every value is HTML-escaped: run names and params come from user configs.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable, Mapping

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 640px; border: 1px solid #d0d7de; }
figcaption { font-size: 13px; color: #59636e; }
code { background: #f6f8fa; padding: 0 3px; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def to_html(title: str, summary: str, rows: list[Mapping[str, Any]], plots: Iterable[Path],
            skipped: Mapping[str, str] | None = None) -> str:
    """The page: `title`, a `summary` line, the table of `rows` (one dict per run, as
    `report.table_rows` builds them) and every PNG of `plots` embedded inline."""
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    if rows:
        cols = list(rows[0])
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
                   + "</tr></thead><tbody>")
        for row in rows:
            cells = [_cell(row[c])[:8] if c == "run_id" else _cell(row[c]) for c in cols]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
    else:
        out.append("<p><em>no runs</em></p>")
    for path in plots:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        name = html.escape(Path(path).stem)
        out.append(f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{name}</figcaption></figure>")
    if skipped:
        out.append("<h2>Not plotted</h2><ul>" + "".join(
            f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>"
            for k, v in skipped.items()) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
