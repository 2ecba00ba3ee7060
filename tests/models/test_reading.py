"""The reading record (`reading.json`): written atomically into a directory, read back equal,
absent for a model trained elsewhere, and a damaged record named with its file."""

from __future__ import annotations

import json

import pytest

from vtc_lab.models.reading import READING_FILE, ReadingSpec, read_reading
from vtc_lab.render.config import RenderConfig


def test_record_round_trips_through_its_file(tmp_path):
    spec = ReadingSpec(RenderConfig(font_size=8.0, page_width=500.0), "a prompt", "after", 40000)
    path = spec.write(tmp_path)
    assert path == tmp_path / READING_FILE
    assert read_reading(tmp_path) == spec
    assert [p.name for p in tmp_path.iterdir()] == [READING_FILE]  # no temp file left behind
    uncapped = ReadingSpec(RenderConfig(), None, "before", None)
    uncapped.write(tmp_path)
    assert read_reading(tmp_path) == uncapped


def test_no_record_and_damaged_records(tmp_path):
    assert read_reading(tmp_path) is None
    (tmp_path / READING_FILE).write_text('{"renderer": {}')
    with pytest.raises(ValueError, match="reading.json: unreadable"):
        read_reading(tmp_path)
    good = ReadingSpec(RenderConfig(), None, "before", 784).to_dict()
    for bad, match in [({**good, "image_max_pixels": 0}, "image_max_pixels must be"),
                       ({**good, "image_max_pixels": True}, "image_max_pixels must be"),
                       ({k: v for k, v in good.items() if k != "image_position"}, "exactly the keys"),
                       ({**good, "renderer": {**good["renderer"], "no_such": 1}}, "renderer config")]:
        (tmp_path / READING_FILE).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            read_reading(tmp_path)
