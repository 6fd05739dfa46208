"""Build script: package layout lives in pyproject.toml; this file adds the hgfast._C extension."""
from setuptools import setup

setup()
