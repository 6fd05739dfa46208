"""pytest-benchmark setup: device and versions in the JSON's machine_info, and ``common`` importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import environment  # noqa: E402


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["hgfast"] = environment()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Keep the summary statistics only: raw per-round times of microsecond cases run to megabytes."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)
