"""Every `vtc-lab render` command written in the docs runs as typed, through a real shell.

The commands are taken verbatim from the ```bash blocks of docs/render.md and docs/index.md
and run by bash, so the shell's quoting and Hydra's override lexer both see exactly what a user
pastes. Only the cost changes: `vtc-lab` is this interpreter's `-m vtc_lab.cli.main`, with
`limit=2 tracking=off progress=false output_root=<tmp>` appended (later overrides win), and the
placeholder inputs the docs name (`traces.parquet`, `/ckpt/Glyph`) exist in the working dir.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtc_lab.render import RenderConfig, render_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "render.md", ROOT / "docs" / "index.md"]


def documented_render_commands() -> list[str]:
    """The `vtc-lab render ...` lines of the docs' bash blocks, in order."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            found += [line for line in block.splitlines() if line.startswith("vtc-lab render")]
    return found


def test_the_docs_have_render_examples_with_the_awkward_characters() -> None:
    cmds = documented_render_commands()
    assert len(cmds) >= 7
    quoted = [c for c in cmds if "text=" in c]
    assert quoted and all(ch in quoted[0] for ch in "$\\=,")
    assert any("benchmark=" in c for c in cmds)


def test_documented_render_commands_parse_and_compose(tmp_path) -> None:
    """Fast check of every documented command: POSIX shell word splitting (shlex, as bash does
    for these lines), then Hydra's override lexer and the real config (a `-m` sweep composes
    once per value); the `text=` examples are rendered and must show exactly the quoted text."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from vtc_lab.cli.render import text_tokenizer
    from vtc_lab.data.render_app import run_render

    parser = OverridesParser.create()
    texts = []
    for cmd in documented_render_commands():
        words = shlex.split(cmd, comments=True)[2:]
        words = [w for w in words if w != "-m"]
        runs = [[]]
        for w in words:  # expand simple sweeps a,b,c into one composition each
            o = parser.parse_override(w)
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            runs = [r + [f"{o.get_key_element()}={v}" if o.is_sweep_override() else w]
                    for r in runs for v in values]
        for overrides in runs:
            cfg = _composed(overrides, tmp_path)
            if cfg.text is not None:
                texts.append(cfg.text)
                cfg.save_images, cfg.progress = True, False
                pages = sorted((Path(run_render(cfg, text_tokenizer(cfg))["output_dir"]) / "pages").glob("*.png"))
                # the page the command wrote is the one its renderer (degradations included)
                # draws for exactly the quoted text
                [expected] = render_text(cfg.text, cfg.renderer)
                assert np.array_equal(np.asarray(Image.open(pages[-1]).convert("RGB")),
                                      np.asarray(expected))
                if cfg.renderer.degrade.level not in (None, "none"):  # the damage is really drawn
                    [clean] = render_text(cfg.text, dataclasses.replace(
                        cfg.renderer, degrade=type(cfg.renderer.degrade)()))
                    assert not np.array_equal(np.asarray(expected), np.asarray(clean))
    assert texts == ["Let $x^2 = 4$, so $x = \\pm 2$.", "P4.8.2.1", "P4.8.2.1", "Let $x^2=4$. Then x=2."]


def _composed(overrides: list[str], tmp_path: Path):
    """The `vtc-lab render` config these command-line overrides compose (tracking off)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import vtc_lab.cli.render  # noqa: F401  (registers the render schema with Hydra)
    from vtc_lab.cli._hydra import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose(config_name="render", overrides=[*overrides, "tracking=off",
                                                       f"output_root={tmp_path}"])
    return OmegaConf.to_object(raw)


@pytest.mark.slow
def test_documented_render_commands_run_as_typed(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vtc_lab.models import ModelConfig, load_backbone, save_backbone

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    pq.write_table(pa.table({"reasoning": ["First, x = 2.", "Then y = 3, so x + y = 5."]}),
                   work / "traces.parquet")
    ckpt = tmp_path / "Glyph"
    save_backbone(load_backbone(ModelConfig(source="tiny", arch="qwen3_vl")), ckpt)

    cmds = documented_render_commands()
    lines = ["set -e", f"vtc-lab() {{ {shlex.quote(sys.executable)} -m vtc_lab.cli.main \"$@\" "
                       f"limit=2 tracking=off progress=false output_root=\"$OUT\"; }}"]
    for i, cmd in enumerate(cmds):  # one output root per command: reports share directory names
        lines += [f"OUT={shlex.quote(str(out / str(i)))}", cmd.replace("/ckpt/Glyph", str(ckpt))]
    script = "\n".join(lines)
    proc = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("\nreport: ") == len(cmds) + 2  # the -m line runs three presets

    # each quoted example renders exactly the text the docs say it does
    said = {"Let $x^2 = 4$, so $x = \\pm 2$.", "P4.8.2.1", "Let $x^2=4$. Then x=2."}
    rendered = {}
    for i, cmd in enumerate(cmds):
        if "text=" in cmd:
            text = re.search(r"'text=\"(.*?)\"'", cmd).group(1)
            [page] = (out / str(i)).glob("render/text-*/pages/*.png")
            words = [w for w in shlex.split(cmd, comments=True)[2:] if w != "-m"]
            [expected] = render_text(text, _composed(words, tmp_path).renderer)
            assert np.array_equal(np.asarray(Image.open(page).convert("RGB")), np.asarray(expected))
            rendered[text] = page
    assert set(rendered) == said
    # a file input's label carries a hash of its path (two files with one stem never share pages)
    sources = {re.sub(r"-[0-9a-f]{8}$", "", json.loads(p.read_text())["source"])
               for p in out.glob("*/render/*/report.json")}
    assert {"math500", "gsm8k", "aime25", "traces", "text"} <= sources
