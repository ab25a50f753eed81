"""Shared fixtures for the Python face's tests.

The tests run real sandboxes through the installed package (``pip install ./crates/python``).
Tests marked ``registry`` install packages from the package index on first use (cached after).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_report_header(config):
    import airlock

    return f"airlock {airlock.__version__} from {os.path.dirname(airlock.__file__)}; AIRLOCK_PYTHON={os.environ.get('AIRLOCK_PYTHON')}"


@pytest.fixture
def marker_tmp(tmp_path_factory):
    """A marker file in the host's /tmp (a real file the host can read)."""
    import uuid

    path = f"/tmp/airlock-py-marker-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("host secret\n")
    yield path
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
