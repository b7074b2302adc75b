"""``import bmdqct`` stays light: no TensorFlow, no matplotlib."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess   # run first (tests/conftest.py)


def test_import_bmdqct_loads_neither_tensorflow_nor_matplotlib():
    code = ("import sys, bmdqct; "
            "heavy = {'tensorflow', 'keras', 'matplotlib'} & set(sys.modules); "
            "assert not heavy, f'import bmdqct loaded {heavy}'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_does_not_load_tensorflow():
    code = ("import sys\n"
            "from bmdqct.cli import build_parser\n"
            "build_parser()\n"
            "assert 'tensorflow' not in sys.modules, 'building the CLI loaded TensorFlow'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_logger_has_only_a_null_handler():
    import logging

    import bmdqct  # noqa: F401

    handlers = logging.getLogger("bmdqct").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]
