"""Suite-wide settings: offline, headless, quiet, and reproducible on a 2-core machine."""

import os

# Nothing may reach a model hub; plots never need a display; tokenizers must not fork threads
# under pytest's process; keep BLAS from oversubscribing the two cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")


import shutil  # noqa: E402

import pytest  # noqa: E402

_template: list = []  # the migrated store of this session, made on first use


@pytest.fixture(autouse=True)
def _copy_of_the_migrated_store(monkeypatch, tmp_path_factory):
    """Every new local MLflow store an app prepares starts as a copy of one empty store migrated
    once per session (a fresh migration costs ~8-10 s on the loaded 2-core box), then goes
    through the real `prepare_store` (schema check included). Fresh migration itself stays
    covered: tests/tracking/test_runs.py calls `prepare_store` directly on new stores."""
    from vtc_lab.tracking import store

    real = store.prepare_store

    def seeded(uri: str, timeout_s: float = 5.0) -> None:
        db = store.sqlite_path(uri)
        if db is not None and not db.exists():
            if not _template:
                path = tmp_path_factory.mktemp("mlflow-template") / store.DB_NAME
                real("sqlite:///" + str(path))
                _template.append(path)
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_template[0], db)
        real(uri, timeout_s)

    monkeypatch.setattr(store, "prepare_store", seeded)
