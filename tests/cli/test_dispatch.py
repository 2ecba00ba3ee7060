"""The `vtc-lab` dispatcher and the packaging of conf/, fonts and benchmark files."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vtc_lab.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


def test_usage_lists_every_command(capsys):
    cli_main.main([])
    out = capsys.readouterr().out
    for name in cli_main.COMMANDS:
        assert name in out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as err:
        cli_main.main(["trian"])
    assert err.value.code == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_every_command_module_has_a_main():
    import importlib

    for module_name, _ in cli_main.COMMANDS.values():
        assert callable(importlib.import_module(module_name).main), module_name


def test_wheel_ships_conf_fonts_and_benchmarks(tmp_path):
    """A non-editable install must find conf/ (as vtc_lab.conf), the fonts and the benchmarks."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True,
    )
    (wheel,) = tmp_path.glob("vtc_lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "vtc_lab/conf/common.yaml" in names
    assert "vtc_lab/eval/benchmarks_data/math500.jsonl" in names
    assert "vtc_lab/eval/benchmarks_data/gpqa_diamond.jsonl.gz" in names
    assert not any(n.endswith("gpqa_diamond.jsonl") for n in names), "GPQA must stay gzipped"
    for app in ("render", "build_data", "train", "eval", "report"):
        if (REPO / "conf" / f"{app}.yaml").exists():
            assert f"vtc_lab/conf/{app}.yaml" in names
    for group_dir in (REPO / "conf").iterdir():
        if group_dir.is_dir() and not group_dir.name.startswith(("_", ".")):
            for yaml in group_dir.rglob("*.yaml"):
                rel = yaml.relative_to(REPO / "conf").as_posix()
                assert f"vtc_lab/conf/{rel}" in names, rel
    fonts = REPO / "vtc_lab" / "render" / "fonts"
    if fonts.exists():
        for ttf in fonts.glob("*.ttf"):
            assert f"vtc_lab/render/fonts/{ttf.name}" in names
