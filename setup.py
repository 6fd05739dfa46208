"""Build script: package layout lives in pyproject.toml; this file adds the hgfast._C extension.

`pip install --no-build-isolation -e .` compiles hgfast._C (CPU kernels always; CUDA kernels when torch has CUDA
and a CUDA toolkit is found (hgfast/_ext.py cuda_wanted), or HGFAST_CUDA=1/0 to force/skip; MAX_JOBS limits
parallel compile jobs). Without torch at build time (plain `pip install -e .` with build isolation) nothing is
compiled here and hgfast JIT-builds the extension on first use (hgfast/_ext.py).
"""
import importlib.util
import os

from setuptools import setup


def extension():
    """(ext_modules, cmdclass) for hgfast._C, or ([], {}) when torch is not importable."""
    try:
        from torch.utils import cpp_extension
    except ImportError:
        print("hgfast: torch is not importable at build time; hgfast._C will be JIT-built on first use")
        return [], {}
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("hgfast_ext", os.path.join(here, "hgfast", "_ext.py"))
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    with_cuda, why = ext.cuda_wanted()
    print(f"hgfast: building hgfast._C {'with' if with_cuda else 'without'} CUDA ({why})")
    sources = [os.path.relpath(p, here) for p in ext.sources(with_cuda)]
    make = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    omp = ext.openmp_flags()  # at::parallel_for is serial without it
    flags = {"cxx": ["-O3"] + omp, "nvcc": ["-O3"]} if with_cuda else {"cxx": ["-O3"] + omp}
    module = make("hgfast._C", sources, include_dirs=[os.path.join(here, "csrc")], extra_compile_args=flags,
                  extra_link_args=omp)
    return [module], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
