"""Measured device ceilings that the report divides by: copy bandwidth and matrix-multiply rate.

GPU: a 1 GiB device-to-device copy (bytes read + written) and a bf16 8192^3 matmul.
CPU: a 64 MiB copy and an fp32 2048^3 matmul.
"""
import torch

from common import ON_GPU, nbytes, run_case

DEVICE = "cuda" if ON_GPU else "cpu"


def test_copy_bandwidth(benchmark):
    benchmark.group = "ceiling: copy"
    src = torch.randn((2**28 if ON_GPU else 2**24,), device=DEVICE)
    dst = torch.empty_like(src)
    run_case(benchmark, lambda: dst.copy_(src), impl="copy", bytes_moved=2 * nbytes(src))


def test_matmul_rate(benchmark):
    benchmark.group = "ceiling: matmul"
    n, dtype = (8192, torch.bfloat16) if ON_GPU else (2048, torch.float32)
    a = torch.randn(n, n, device=DEVICE, dtype=dtype)
    b = torch.randn(n, n, device=DEVICE, dtype=dtype)
    run_case(benchmark, lambda: a @ b, impl=f"matmul {str(dtype).replace('torch.', '')}", flops=2.0 * n**3)
