"""Fitting the cost model's serving terms to decode-step measurements (pure Python).

Why linear: when the step is memory-bound (every public decode point is), the step time is

    step = step_overhead + weights / (peak_bw * e_w) + batch * K/V bytes / (peak_bw * e_w * e_kv)
           + batch * seq_overhead

which is linear in (step_overhead, 1/e_w, 1/(e_w e_kv), seq_overhead). A least-squares fit on
relative errors (each row divided by its measurement, so a 5 ms and a 30 ms point weigh the
same) has one answer, no starting point and no optimiser to trust. The points are split into
`fit` and `heldout` before fitting (in their JSON); only the fit points enter the solve, and
`check` reports the error of every point, held-out ones included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vtc_lab.infer.costshapes import PEAKS, ModelShape

LLAMA3_8B = ModelShape(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                       intermediate=14336, vocab=128256, vision_layers=0, vision_hidden=0,
                       vision_intermediate=0)
"""Llama-3(.1)-8B's published dimensions: the model of the public serving figures."""
MODELS = {"llama3_8b": LLAMA3_8B}


@dataclass(frozen=True)
class DecodePoint:
    """One measured decode step: `batch` sequences at mean `context` on `gpu`."""

    id: str
    gpu: str
    batch: int
    context: float
    step_s: float
    split: str
    source: str = ""


def load_points(path: str | Path) -> tuple[ModelShape, list[DecodePoint]]:
    """The model and the usable (fit / heldout) points of a measurements JSON."""
    data = json.loads(Path(path).read_text())
    if data.get("model") not in MODELS:
        raise ValueError(f"{path}: model must be one of {sorted(MODELS)}, got {data.get('model')!r}")
    points = []
    for p in data["points"]:
        if p["split"] not in ("fit", "heldout", "excluded"):
            raise ValueError(f"{path}: point {p['id']!r}: split must be fit, heldout or excluded")
        if p["gpu"] not in PEAKS:
            raise ValueError(f"{path}: point {p['id']!r}: gpu must be one of {sorted(PEAKS)}")
        if p["split"] != "excluded":
            points.append(DecodePoint(p["id"], p["gpu"], int(p["batch"]), float(p["context"]),
                                      p["step_ms"] / 1e3, p["split"], p.get("source", "")))
    return MODELS[data["model"]], points


def _row(model: ModelShape, p: DecodePoint) -> list[float]:
    bandwidth = PEAKS[p.gpu][1]
    return [1.0, model.weight_bytes() / bandwidth,
            p.batch * (p.context + 1) * model.kv_bytes_per_token() / bandwidth, float(p.batch)]


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a is square)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-30:
            raise ValueError("the fit points do not determine the terms (singular system)")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def fit_serving(model: ModelShape, points: list[DecodePoint]) -> dict:
    """Least squares on relative error over the `fit` points; the SERVING_FIT dict's keys."""
    fit = [p for p in points if p.split == "fit"]
    if len(fit) < 4:
        raise ValueError(f"need at least 4 fit points for 4 terms, got {len(fit)}")
    rows = [[v / p.step_s for v in _row(model, p)] for p in fit]
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(4)] for i in range(4)]
    atb = [sum(r[i] for r in rows) for i in range(4)]
    overhead, inv_w, inv_kv, per_seq = _solve(ata, atb)
    if min(overhead, inv_w, inv_kv, per_seq) < 0:
        raise ValueError(f"fit gave a negative term: overhead {overhead}, 1/e_w {inv_w}, "
                         f"1/(e_w e_kv) {inv_kv}, per sequence {per_seq}")
    return dict(weight_efficiency=1 / inv_w, kv_efficiency=inv_w / inv_kv,
                step_overhead_s=overhead, seq_overhead_s=per_seq)


def predict_step(model: ModelShape, p: DecodePoint, terms: dict) -> float:
    """The fitted formula at one point (the same arithmetic as costmodel.step_s when
    memory-bound; kept here so the fit and its check read the same rows)."""
    inv_w = 1 / terms["weight_efficiency"]
    inv_kv = inv_w / terms["kv_efficiency"]
    r = _row(model, p)
    return r[0] * terms["step_overhead_s"] + r[1] * inv_w + r[2] * inv_kv + \
        r[3] * terms["seq_overhead_s"]


def check(model: ModelShape, points: list[DecodePoint], terms: dict) -> list[dict]:
    """Per point: measured and predicted seconds, signed relative error, its split."""
    out = []
    for p in points:
        pred = predict_step(model, p, terms)
        out.append(dict(id=p.id, split=p.split, gpu=p.gpu, batch=p.batch, context=p.context,
                        measured_s=p.step_s, predicted_s=pred,
                        error=(pred - p.step_s) / p.step_s, source=p.source))
    return out
