"""Resolve the hgfast._C extension: compiled `hgfast._C` → JIT build of csrc/ (ninja, cached) → none.

When no tier loads, the public ops run their pure-PyTorch references. Resolution happens on first use, not at
`import hgfast`. `STATUS` records the tier that loaded and why the others were skipped (see `python -m hgfast.info`).
Environment: HGFAST_NO_EXT=1 skips both tiers (reference only); HGFAST_NO_JIT=1 skips the JIT build;
HGFAST_CACHE sets the JIT build cache (default ~/.cache/hgfast); HGFAST_CUDA=0/1 skips/forces CUDA sources.
Without a visible GPU and without TORCH_CUDA_ARCH_LIST the CUDA sources are built for ``DEFAULT_ARCHS``.
"""
import contextlib
import glob
import hashlib
import os
import shutil
import traceback

import torch

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
STATUS = {"tier": None, "skipped": {}}
_resolved = False
DEFAULT_ARCHS = "7.5;8.0;9.0+PTX"  # Turing, Ampere (runs on 8.6/8.9 too), Hopper; PTX for newer GPUs
FALLBACK_ROOTS = ("/usr/local/cuda",)


def toolkit_root(candidates) -> str | None:
    """The first of ``candidates`` (paths or None) that holds a CUDA toolkit (include/cuda_runtime.h)."""
    return next((c for c in candidates if c and os.path.isfile(os.path.join(c, "include", "cuda_runtime.h"))), None)


def cuda_wanted():
    """(build CUDA sources?, why): HGFAST_CUDA=0 skips, HGFAST_CUDA=1 forces (with a CUDA torch); else torch must
    have CUDA and a toolkit (include/cuda_runtime.h) be found.

    A CUDA_HOME or CUDA_PATH you set is used as it is. Otherwise torch guesses from the nvcc on PATH, and a wrapper
    script there (/usr/local/bin/nvcc) gives /usr/local, which has no headers: then nvcc's resolved path (through
    links) or /usr/local/cuda is used, and CUDA_HOME set to it for the build. Also sets TORCH_CUDA_ARCH_LIST to
    ``DEFAULT_ARCHS`` when it is unset and no GPU is visible (torch's own choice fails with no GPU to look at).
    Those settings stay; in a user's process call it through ``cuda_build_settings``, which undoes them."""
    env = os.environ.get("HGFAST_CUDA")
    if env == "0":
        return False, "HGFAST_CUDA=0"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} is a CPU build" + (" (HGFAST_CUDA=1 ignored)" if env == "1" else "")
    from torch.utils import cpp_extension

    guess = cpp_extension.CUDA_HOME
    given = next((os.environ[k] for k in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(k)), None)
    nvcc = shutil.which("nvcc")
    searched = [given] if given else [guess, nvcc and os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
                                      *FALLBACK_ROOTS]
    root = toolkit_root(searched)
    if root is None and env != "1":
        where = f"the CUDA_HOME you set, {given}," if given else f"CUDA_HOME={guess} (torch's guess)"
        return False, (f"no CUDA toolkit found ({where} has no include/cuda_runtime.h; set CUDA_HOME to the "
                       f"toolkit's root, e.g. /usr/local/cuda)")
    if root is not None and root != guess:
        cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"] = root
    why = f"{'HGFAST_CUDA=1, ' if env == '1' else ''}torch CUDA {torch.version.cuda}, CUDA_HOME={root or guess}"
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and torch.cuda.device_count() == 0:
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
        why += f", no GPU visible: TORCH_CUDA_ARCH_LIST={DEFAULT_ARCHS}"
    return True, why


@contextlib.contextmanager
def cuda_build_settings():
    """``cuda_wanted()``'s answer, with the CUDA_HOME and TORCH_CUDA_ARCH_LIST it sets (and torch's CUDA_HOME)
    in force inside the block only: a JIT build in a user's process leaves their environment as it was."""
    from torch.utils import cpp_extension

    saved = {name: os.environ.get(name) for name in ("CUDA_HOME", "TORCH_CUDA_ARCH_LIST")}
    saved_home = getattr(cpp_extension, "CUDA_HOME", None)
    try:
        yield cuda_wanted()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cpp_extension.CUDA_HOME = saved_home


def _arch_key() -> str:
    """What the CUDA build targets, for the JIT cache key: TORCH_CUDA_ARCH_LIST, else the visible GPUs' compute
    capabilities (torch's choice then)."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if archs:
        return archs
    return ",".join(f"{a}.{b}" for a, b in sorted({torch.cuda.get_device_capability(i)
                                                    for i in range(torch.cuda.device_count())}))


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
    with cuda_build_settings() as (with_cuda, _):
        return _build_jit(cpp_extension, with_cuda)


def _build_jit(cpp_extension, with_cuda: bool) -> str:
    srcs = sources(with_cuda)
    if not srcs:
        raise RuntimeError(f"no C++ sources at {CSRC} (not an editable/source install)")
    digest = hashlib.sha1(f"{torch.__version__} {with_cuda} {_arch_key() if with_cuda else ''}".encode())
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


@torch.compiler.assume_constant_result
def _has_kernel(qualname: str, key: str) -> bool:
    """Whether the dispatcher has a ``key`` kernel for op ``qualname``; a constant to torch.compile, which cannot
    trace the query (a first look-up inside a compiled function, before any eager call, broke its graph)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key)


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
    if STATUS["tier"] is not None and key is not None and _has_kernel(f"hgfast::{name}", key):
        found = getattr(torch.ops.hgfast, name)
    if found is None and kind == "cuda" and STATUS["tier"] is not None and os.environ.get("HGFAST_CUDA") != "0" \
            and not any(k == "cuda" and v is None for (_, k), v in _OPS.items()):
        import warnings

        warnings.warn(f"hgfast._C ({STATUS['tier']}) has no CUDA kernels: {name} and the other hgfast ops run as "
                      f"their PyTorch references on the GPU (slower); `python -m hgfast.info` says why the build "
                      f"left CUDA out", RuntimeWarning, stacklevel=3)
    _OPS[name, kind] = found
    return found
