"""`python -m hgfast.info`: versions, which tier serves each hgfast op on each device, and why tiers were skipped."""
import importlib.util
import platform

import torch

from . import __version__, _ext

OPS = ("gaussian_heatmaps", "argmax_decode", "heatmap_mse_loss")


def report():
    """The report as a list of lines."""
    status = _ext.resolve()
    triton = importlib.util.find_spec("triton")
    lines = [
        f"hgfast {__version__}  python {platform.python_version()}  torch {torch.__version__}",
        f"triton {__import__('triton').__version__ if triton else 'not installed'}  "
        f"torch CUDA {torch.version.cuda or 'none (CPU build)'}  "
        f"GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}",
        f"CPU threads {torch.get_num_threads()}",
        f"fused model (Triton kernels): {_fused_status()}",
        f"hgfast._C: {status['tier'] or 'not loaded'}",
    ]
    lines += [f"  skipped {tier}: {why}" for tier, why in status["skipped"].items()]
    with _ext.cuda_build_settings() as (with_cuda, why):
        pass
    lines.append(f"  CUDA kernels in a build here: {'yes' if with_cuda else 'no'} ({why})")
    for device in ("cpu", "cuda"):
        for name in OPS:
            if device == "cuda" and not torch.cuda.is_available():
                tier = "unavailable (no CUDA device)"
            elif _ext.op(name, device) is not None:
                tier = f"C++ kernel ({status['tier']})"
            else:
                tier = "PyTorch reference" + ("" if status["tier"] is None else f" (_C has no {device} kernel)")
            lines.append(f"{name:>18} on {device:<4}: {tier}")
    return lines


def _fused_status() -> str:
    from .fused import triton_available, triton_error

    if not triton_available():
        return f"unavailable (hgfast.kernels does not import: {triton_error()})"
    if not torch.cuda.is_available():
        return "not here (needs a CUDA GPU; StackedHourglass(fused=True) runs the reference path on the CPU)"
    return f"on for CUDA tensors ({torch.cuda.get_device_name()})"


if __name__ == "__main__":
    print("\n".join(report()))
