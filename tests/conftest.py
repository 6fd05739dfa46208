"""Shared test setup: marker auto-skips, the Triton interpreter on CPU-only machines, Triton tests on CUDA."""
import importlib.util
import os

import pytest
import torch

# Triton kernels run on CPU only under the interpreter; it must be chosen before triton is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_triton = pytest.mark.skip(reason="needs triton (pip install triton==3.6.0 'numpy<2.3')")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
        if "triton" in item.keywords and not HAS_TRITON:
            item.add_marker(skip_triton)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _triton_on_cuda(request):
    """Tests marked ``triton`` build their tensors and models on the default device: CUDA where there is one (the
    Triton kernels then run compiled), else CPU (the interpreter, with ``force_triton_on_cpu``). On CUDA, TF32 is
    off, so fp32 GEMMs (the kernels' ``dot_precision`` and the cuDNN/cuBLAS references) are IEEE and the fp32
    tolerances hold."""
    if not (HAS_CUDA and "triton" in request.keywords):
        yield
        return
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_default_device("cuda")
    try:
        yield
    finally:
        torch.set_default_device(None)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
