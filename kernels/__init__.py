"""Triton kernels and their launchers (installed as ``hgfast.kernels``)."""
