"""Build glue that pyproject.toml cannot express: the pybind11 extension and the kernels/ mapping."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

ext_modules = [
    Pybind11Extension(
        "oreal_mega._C",
        sorted(["csrc/bindings.cpp", "csrc/packing.cpp"]),
        cxx_std=17,
        extra_compile_args=["-O3"],
    )
]

setup(
    packages=find_packages(include=["oreal_mega", "oreal_mega.*"]) + ["oreal_mega.kernels"],
    # The Triton kernels live in the top-level kernels/ folder but import as oreal_mega.kernels.
    package_dir={"oreal_mega.kernels": "kernels"},
    package_data={"oreal_mega": ["data/*"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
)
