"""Resolve the hgfast._C extension: compiled `hgfast._C` → JIT build of csrc/ (ninja, cached) → none.

When no tier loads, the public ops run their pure-PyTorch references. Resolution happens on first use, not at
`import hgfast`. `STATUS` records the tier that loaded and why the others were skipped (see `python -m hgfast.info`).
Environment: HGFAST_NO_EXT=1 skips both tiers (reference only); HGFAST_NO_JIT=1 skips the JIT build;
HGFAST_CACHE sets the JIT build cache (default ~/.cache/hgfast); HGFAST_CUDA=0/1 skips/forces CUDA sources.
"""
import glob
import hashlib
import os
import traceback

import torch

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
STATUS = {"tier": None, "skipped": {}}
_resolved = False


def cuda_wanted():
    """(build CUDA sources?, why): HGFAST_CUDA=1/0 forces/skips; else torch must have CUDA and CUDA_HOME exist."""
    env = os.environ.get("HGFAST_CUDA")
    if env in ("0", "1"):
        return env == "1", f"HGFAST_CUDA={env}"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} is a CPU build"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return False, "CUDA_HOME not found"
    if not os.path.isfile(os.path.join(CUDA_HOME, "include", "cuda_runtime.h")):
        # torch guesses CUDA_HOME from the nvcc on PATH; a wrapper script (/usr/local/bin/nvcc) gives /usr/local
        return False, (f"CUDA_HOME={CUDA_HOME} has no include/cuda_runtime.h (set CUDA_HOME to the CUDA toolkit's "
                       f"root, e.g. /usr/local/cuda)")
    return True, f"torch CUDA {torch.version.cuda}, CUDA_HOME={CUDA_HOME}"


def openmp_flags():
    """Compiler/linker flags that make at::parallel_for in csrc/ run on torch's OpenMP pool: ATen's parallel_for is
    header-inline and runs serially unless the extension itself is compiled with OpenMP. On Linux the extension's
    libgomp.so.1 resolves to the one torch already loaded (same soname), so torch.set_num_threads() governs it."""
    import sys

    if sys.platform.startswith("linux") and "OpenMP" in torch.__config__.parallel_info().split("backend:")[-1]:
        return ["-fopenmp"]
    return []


def sources(with_cuda):
    """Absolute paths of the extension sources (also used by setup.py); empty if csrc/ is absent."""
    found = glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp"))
    if with_cuda and found:
        found += glob.glob(os.path.join(CSRC, "cuda", "*.cpp")) + glob.glob(os.path.join(CSRC, "cuda", "*.cu"))
    return sorted(found)


def _load_compiled():
    from . import _C  # noqa: F401  (registers the ops with the dispatcher)
    return "compiled"


def _load_jit():
    from torch.utils import cpp_extension

    if os.environ.get("HGFAST_NO_JIT") == "1":
        raise RuntimeError("HGFAST_NO_JIT=1")
    with_cuda, _ = cuda_wanted()
    srcs = sources(with_cuda)
    if not srcs:
        raise RuntimeError(f"no C++ sources at {CSRC} (not an editable/source install)")
    digest = hashlib.sha1(torch.__version__.encode())
    for path in srcs + glob.glob(os.path.join(CSRC, "**", "*.h*"), recursive=True):
        digest.update(path.encode() + open(path, "rb").read())
    root = os.environ.get("HGFAST_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hgfast"))
    build = os.path.join(root, "jit_" + digest.hexdigest()[:16])
    failed = os.path.join(build, "FAILED")
    if os.path.exists(failed):
        raise RuntimeError(f"an earlier JIT build of these sources failed; see {failed} (delete it to retry)")
    os.makedirs(build, exist_ok=True)
    try:
        cpp_extension.load(
            name="hgfast_C", sources=srcs, build_directory=build, is_python_module=False,
            extra_cflags=["-O3"] + openmp_flags(), extra_ldflags=openmp_flags(), extra_cuda_cflags=["-O3"],
            extra_include_paths=[CSRC], with_cuda=with_cuda, verbose=False)
    except Exception:
        with open(failed, "w") as f:
            f.write(traceback.format_exc())
        raise
    return "jit" + ("" if with_cuda else " (CPU only)")


def resolve():
    """Load the first working tier once; return STATUS."""
    global _resolved
    if _resolved:
        return STATUS
    _resolved = True
    if os.environ.get("HGFAST_NO_EXT") == "1":
        STATUS["skipped"]["compiled"] = STATUS["skipped"]["jit"] = "HGFAST_NO_EXT=1"
        return STATUS
    for name, loader in (("compiled", _load_compiled), ("jit", _load_jit)):
        try:
            STATUS["tier"] = loader()
        except Exception as e:  # any failure means: try the next tier, and say why
            STATUS["skipped"][name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
            continue
        from .ops import _fake  # noqa: F401  (fake kernels and autograd need the schemas loaded)
        break
    return STATUS


_OPS = {}


def op(name, device):
    """torch.ops.hgfast.<name> if a kernel for device's type is loaded, else None (use the reference).
    Cached per (name, device type) after the first look-up (the dispatcher query costs microseconds per call)."""
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    try:
        return _OPS[name, kind]
    except KeyError:
        pass
    resolve()
    found = None
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(kind)
    if STATUS["tier"] is not None and key is not None and \
            torch._C._dispatch_has_kernel_for_dispatch_key(f"hgfast::{name}", key):
        found = getattr(torch.ops.hgfast, name)
    _OPS[name, kind] = found
    return found
