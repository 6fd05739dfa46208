"""pytest-benchmark setup: device and versions in the JSON's machine_info, and ``common`` importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import environment  # noqa: E402


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["hgfast"] = environment()
