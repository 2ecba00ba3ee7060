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
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_template: list = []  # the migrated store of this session, made on first use


def _migrated_template(tmp_path_factory) -> Path:
    """One empty MLflow store, migrated once per session by the real `prepare_store`."""
    from vtc_lab.tracking import store

    if not _template:
        path = tmp_path_factory.mktemp("mlflow-template") / store.DB_NAME
        _real_prepare_store(store)("sqlite:///" + str(path))
        _template.append(path)
    return _template[0]


def _real_prepare_store(store):
    return getattr(store.prepare_store, "_unseeded", store.prepare_store)


@pytest.fixture
def seed_store(tmp_path_factory):
    """`seed_store(db_path)`: put a copy of the session's migrated empty store at `db_path`
    (before a subprocess or a server opens it there), so that process finds a current schema
    instead of spending ~5-10 s on a fresh migration. The process still runs its own schema
    check; fresh migration itself stays covered by tests/tracking/test_runs.py."""

    def seed(db_path) -> Path:
        db_path = Path(db_path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(tmp_path_factory), db_path)
        return db_path

    return seed


@pytest.fixture(autouse=True)
def _copy_of_the_migrated_store(monkeypatch, tmp_path_factory):
    """Every new local MLflow store an app prepares starts as a copy of one empty store migrated
    once per session (a fresh migration costs ~8-10 s on the loaded 2-core box), then goes
    through the real `prepare_store` (schema check included). Fresh migration itself stays
    covered: tests/tracking/test_runs.py calls `prepare_store` directly on new stores."""
    from vtc_lab.tracking import store

    real = _real_prepare_store(store)

    def seeded(uri: str, timeout_s: float = 5.0) -> None:
        db = store.sqlite_path(uri)
        if db is not None and not db.exists():
            template = _migrated_template(tmp_path_factory)
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, db)
        real(uri, timeout_s)

    seeded._unseeded = real
    monkeypatch.setattr(store, "prepare_store", seeded)


_CWD_MLRUNS = Path.cwd() / "mlruns"
_CWD_MLRUNS_BEFORE = _CWD_MLRUNS.exists()


@pytest.fixture(autouse=True)
def _no_mlruns_in_the_working_directory(request):
    """Fail the test after which ./mlruns appeared in the working directory: MLflow puts it there
    for a store opened without a URI, or for artifacts of an experiment created without an
    artifact location (its default root is ./mlruns of the current directory)."""
    yield
    if not _CWD_MLRUNS_BEFORE and _CWD_MLRUNS.exists():
        pytest.fail(f"{request.node.nodeid} left {_CWD_MLRUNS} behind (tests write only under "
                    "tmp paths: give MLflow a tmp URI and experiments a tmp artifact location)")


def pytest_collection_modifyitems(config, items):
    """`gpu`-marked tests skip where torch sees no CUDA device (the CPU suite stays green; on a
    GPU machine `pytest -m gpu` runs them)."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)
