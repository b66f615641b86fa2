"""Quiet by default: warnings raised in Dask tasks on worker processes reach the user's log."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from landcoverpy.pipeline.cluster import dask_client
from tests.conftest import make_settings
from tests.task_helpers import warn_and_return


def test_worker_warnings_reach_the_client_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, DASK_N_WORKERS=1)
    with caplog.at_level(logging.WARNING), dask_client(settings) as client:
        assert client.submit(warn_and_return, 21, pure=False).result() == 42
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "worker-side warning 21" not in caplog.text:
            time.sleep(0.1)  # events travel worker -> scheduler -> client
    assert "worker-side warning 21" in caplog.text
    assert "suspicious band 21 (a warning raised on a worker)" in caplog.text
    assert "[worker tcp://127.0.0.1:" in caplog.text  # says which worker
