"""Builds tensorzip._tensorzip with the project's CMake (TENSORZIP_PYTHON=ON) for pip; metadata is in pyproject.toml."""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DTENSORZIP_PYTHON=ON",
                        "-DTENSORZIP_TESTS=OFF", "-DTENSORZIP_FFTW=OFF", f"-DPython_EXECUTABLE={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", build, "--target", "_tensorzip", "--parallel", str(os.cpu_count() or 1)], check=True)
        pkg = os.path.join(build, "python", "tensorzip")
        built = [f for f in os.listdir(pkg) if f.startswith("_tensorzip") and f.endswith(".so")]
        if len(built) != 1:
            raise RuntimeError(f"expected one _tensorzip*.so in {pkg}, found {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(pkg, built[0]), target)


setup(
    packages=["tensorzip"],
    package_dir={"tensorzip": "python/tensorzip"},
    ext_modules=[Extension("tensorzip._tensorzip", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
