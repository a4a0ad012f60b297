# SPDX-License-Identifier: GPL-2.0
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import vm  # noqa: E402


@pytest.fixture(autouse=True)
def stop_every_qemu():
    """Every QEMU a test starts is stopped when it ends, passed or failed."""
    yield
    vm.kill_all()


@pytest.fixture(scope="module", autouse=True)
def stop_every_module_qemu():
    """And every QEMU a module fixture starts, also when the fixture fails
    (test_host_hook's runs): this one is set up before it and torn down
    after it."""
    yield
    vm.kill_all()


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)
