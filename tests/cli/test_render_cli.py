"""`vtc-lab render`: the real Hydra config, the plain function, and the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.render import text_tokenizer
from vtc_lab.data.render_app import RenderAppConfig, load_source
from vtc_lab.data.render_app import run_render as _run_render
from vtc_lab.render import RenderConfig, render_text, vision_tokens


def _cfg(tmp_path: Path, *overrides: str) -> RenderAppConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose(config_name="render", overrides=[f"output_root={tmp_path}", "progress=false",
                                                       *overrides])
    return OmegaConf.to_object(raw)


def run_render(cfg: RenderAppConfig) -> dict:
    """The stage function with the tokenizer the CLI would pick for `cfg.tokenizer`."""
    return _run_render(cfg, text_tokenizer(cfg))


def test_default_config_is_the_math500_report_with_reference_renderer(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.benchmark.name == "math500" and cfg.field is None and cfg.text is None
    assert cfg.renderer == RenderConfig()
    assert cfg.tokenizer == "qwen" and cfg.tracking.mode == "local"


def test_report_on_math500_subset_with_mlflow(tmp_path, capsys) -> None:
    cfg = _cfg(tmp_path, "limit=12")
    m = run_render(cfg)
    out = Path(m["output_dir"])
    rows = [json.loads(line) for line in (out / "per_text.jsonl").read_text().splitlines()]
    assert len(rows) == 12 == m["render/texts"]
    # totals are the sums of the per-text rows, and per-text counts follow the page sizes
    for bb in ("qwen2_5_vl", "qwen3_vl", "glm4v"):
        assert m[f"render/{bb}/vision_tokens"] == sum(r["vision_tokens"][bb] for r in rows)
        assert m[f"render/{bb}/vision_tokens_delim"] == m[f"render/{bb}/vision_tokens"] + 2 * m["render/pages"]
        assert m[f"render/{bb}/ratio_pooled"] == pytest.approx(
            m["render/text_tokens"] / m[f"render/{bb}/vision_tokens"])
    r0 = rows[0]
    assert r0["vision_tokens"]["qwen3_vl"] == sum(vision_tokens(w, h, "qwen3_vl") for w, h in r0["page_sizes"])
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["render/texts"] == 12 and report["renderer"]["font"] == "DejaVuSans"
    printed = capsys.readouterr().out
    assert "compression = text tokens / vision tokens" in printed and "qwen3_vl" in printed
    assert (tmp_path / "mlflow.db").is_file()


@pytest.mark.parametrize("name, column", [("math500", "solution"), ("aime25", "problem"),
                                          ("amc23", "question"), ("gsm8k", "answer"),
                                          ("gpqa_diamond", "question")])
def test_every_benchmark_renders_through_the_benchmark_group(tmp_path, name, column) -> None:
    """`benchmark=<name>` is the same config group as in `vtc-lab eval`; each bundled benchmark
    renders its worked solution if it ships one, else its question."""
    from vtc_lab.eval import BenchmarkConfig, load_benchmark

    cfg = _cfg(tmp_path, f"benchmark={name}", "limit=2", "tracking=off", "stats_only=true")
    assert cfg.benchmark.name == name
    m = run_render(cfg)
    assert m["render/texts"] == 2 and Path(m["output_dir"]).name.startswith(f"{name}-")
    problems = load_benchmark(BenchmarkConfig(name=name))[:2]
    expected = [p.question if column in ("problem", "question") else
                (p.meta["reference"] if column == "answer" else p.meta[column]) for p in problems]
    chars = [json.loads(line)["chars"]
             for line in (Path(m["output_dir"]) / "per_text.jsonl").read_text().splitlines()]
    assert chars == [len(t) for t in expected]


def test_benchmark_field_and_local_file(tmp_path) -> None:
    local = tmp_path / "mine.jsonl"
    local.write_text(json.dumps({"question": "q one", "answer": "1", "notes": "n"}) + "\n")
    src, texts, invalid_utf8 = load_source(_cfg(tmp_path, "benchmark=local_jsonl", f"benchmark.path={local}"))
    assert (src, texts, invalid_utf8) == ("local", ["q one"], 0)
    assert load_source(_cfg(tmp_path, "benchmark=local_jsonl", f"benchmark.path={local}",
                            "field=notes"))[1] == ["n"]
    assert load_source(_cfg(tmp_path, "benchmark=aime25", "field=id", "limit=1"))[1] == ["0"]
    toy = load_source(_cfg(tmp_path, "benchmark.name=toy", "limit=3"))
    assert toy[0] == "toy" and len(toy[1]) == 3 and toy[1][0].startswith("Apply the ")
    with pytest.raises(Exception, match="limit=N instead"):
        _cfg(tmp_path, "benchmark=gsm8k", "benchmark.limit=5")


def test_text_input_saves_the_exact_pages(tmp_path) -> None:
    cfg = _cfg(tmp_path, "text='Hello $x^2$, world.'", "save_images=true", "tracking=off",
               "renderer=mono")
    m = run_render(cfg)
    pngs = sorted((Path(m["output_dir"]) / "pages").glob("*.png"))
    expected = render_text("Hello $x^2$, world.", RenderConfig(font="DejaVuSansMono"))
    assert len(pngs) == len(expected) == 1
    assert np.array_equal(np.asarray(Image.open(pngs[0]).convert("RGB")), np.asarray(expected[0]))


def test_jsonl_and_parquet_fields(tmp_path) -> None:
    src = tmp_path / "traces.jsonl"
    src.write_text(json.dumps({"reasoning": "one two"}) + "\n\n" + json.dumps({"reasoning": "three"}) + "\n")
    m = run_render(_cfg(tmp_path, f"file={src}", "field=reasoning", "tracking=off", "stats_only=true"))
    assert m["render/texts"] == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"reasoning": ["a b c", "d", "e f"]}), tmp_path / "t.parquet")
    m = run_render(_cfg(tmp_path, f"file={tmp_path / 't.parquet'}", "field=reasoning",
                        "tracking=off", "stats_only=true"))
    assert m["render/texts"] == 3


def test_bad_inputs_are_named(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"solution": "ok"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        run_render(_cfg(tmp_path, f"file={bad}", "tracking=off"))
    missing = tmp_path / "m.jsonl"
    missing.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"m\.jsonl:1: no field 'solution' \(has: text\)"):
        run_render(_cfg(tmp_path, f"file={missing}", "tracking=off"))
    with pytest.raises(FileNotFoundError, match="input file not found"):
        run_render(_cfg(tmp_path, f"file={tmp_path / 'nope.jsonl'}", "tracking=off"))
    with pytest.raises(Exception, match="unknown backbone"):
        _cfg(tmp_path, "backbones=[llava]")
    with pytest.raises(Exception, match=r"renderer\.font_size"):
        _cfg(tmp_path, "renderer.font_size=-3")


def test_console_script_runs_a_real_process(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vtc_lab.cli.main", "render", "text=Hello from a subprocess",
         "tracking=off", f"output_root={tmp_path}", "progress=false"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "texts        1" in proc.stdout and "qwen2_5_vl" in proc.stdout
    assert len(list(tmp_path.glob("render/text-*/report.json"))) == 1


def test_local_tokenizer_counts_the_text_side(tmp_path) -> None:
    """`tokenizer=local` counts with a checkpoint's own tokenizer (here a saved tiny backbone)."""
    from vtc_lab.models import ModelConfig, load_backbone, save_backbone

    backbone = load_backbone(ModelConfig(source="tiny", arch="qwen3_vl"))
    save_backbone(backbone, tmp_path / "ckpt")
    tok = backbone.tokenizer
    text = "Let $x^2 = 4$. Then $x = \\pm 2$, so the answer is 2."
    m = run_render(_cfg(tmp_path, f"text='{text}'", "tokenizer=local",
                        f"tokenizer_path={tmp_path / 'ckpt'}", "tracking=off"))
    assert m["render/text_tokens"] == len(tok(text, add_special_tokens=False)["input_ids"])


def test_local_tokenizer_needs_a_path(tmp_path) -> None:
    with pytest.raises(Exception, match="tokenizer=local needs tokenizer_path"):
        _cfg(tmp_path, "tokenizer=local")
