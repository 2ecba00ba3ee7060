"""The committed config reference is exactly what the generator prints from the code."""

from __future__ import annotations

import dataclasses

from vtc_lab.cli import docs_config
from vtc_lab.tracking.config import TrackingConfig


def test_field_docstrings_are_read_from_the_source():
    docs = docs_config.field_docs(TrackingConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrackingConfig)}
    assert docs["connect_timeout_s"].startswith("How long to wait for a tracking server")


def test_committed_config_reference_is_up_to_date():
    text = docs_config.render()
    committed = docs_config.DEFAULT_OUTPUT.read_text(encoding="utf-8")
    assert committed == text, ("docs/config-reference.md is stale: run "
                               "`python -m vtc_lab.cli.docs_config` and commit it")


def test_every_app_and_group_field_is_documented():
    """A field without a docstring would show an empty description in the reference."""
    missing = []
    for app, obj in docs_config.app_schemas().items():
        stack = [(app, obj)]
        while stack:
            path, cfg = stack.pop()
            docs = docs_config.field_docs(type(cfg))
            for f in dataclasses.fields(cfg):
                if f.name not in docs:
                    missing.append(f"{path}.{f.name} ({type(cfg).__name__})")
                value = getattr(cfg, f.name)
                if dataclasses.is_dataclass(value):
                    stack.append((f"{path}.{f.name}", value))
    assert not missing, "fields without a docstring: " + ", ".join(sorted(set(missing)))
