"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmdqct._util import release_freed_memory

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of the licensed real CT scans (``../shared/data/real``); CI provides it."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real CT data not found at {REAL_DATA}; CI runs with ../shared beside the clone")
    return REAL_DATA


def pytest_collection_modifyitems(config, items):
    """Run the tests marked ``subprocess`` first, while this process is still small.

    A notebook kernel or a CLI subprocess that runs the model needs 2-2.6 GB beside this process;
    late in the suite this process holds 2-3 GB itself (TensorFlow's runtime and the cached model),
    and the two together passed 4 GB. The order of the other tests is kept.
    """
    items.sort(key=lambda item: item.get_closest_marker("subprocess") is None)


@pytest.fixture(autouse=True)
def _return_freed_memory():
    """After each test, hand the heap memory it freed back to the system (glibc ``malloc_trim``).

    numpy's and TensorFlow's large temporary buffers are freed into glibc's arenas, which keep
    them; trimming lets the resident memory follow what is in use.
    """
    yield
    release_freed_memory()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20200706)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(autouse=True)
def _result_json_follows_the_schema(request):
    """After a test that used ``tmp_path``, validate every ``result.json`` under it (bmdqct.schema).

    A result.json that breaks the schema of its format fails the test (at teardown), naming the
    file and the JSON path of the problem.
    """
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is None or not folder.is_dir():
        return
    from bmdqct.schema import ResultSchemaError, validate_result

    problems = []
    for path in sorted(folder.rglob("result.json")):
        try:
            validate_result(path)
        except ResultSchemaError as err:
            problems.append(str(err))
    if problems:
        pytest.fail("result.json written by this test breaks the result schema:\n" + "\n".join(problems),
                    pytrace=False)
