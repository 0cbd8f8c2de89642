"""Builds the C engine. Warnings become errors only in development and CI builds
(PYTEST_THREADPOOL_WERROR=1), never in a user's ``pip install``."""

import glob
import os

from setuptools import Extension, setup

extra = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"]
if os.environ.get("PYTEST_THREADPOOL_WERROR") == "1":
    extra.append("-Werror")
extra += os.environ.get("PYTEST_THREADPOOL_CFLAGS", "").split()

setup(
    ext_modules=[
        Extension(
            "pytest_threadpool._engine",
            sources=sorted(glob.glob("src/pytest_threadpool/_engine/*.c")),
            depends=sorted(glob.glob("src/pytest_threadpool/_engine/*.h")),
            include_dirs=["src/pytest_threadpool/_engine"],
            extra_compile_args=extra,
            extra_link_args=os.environ.get("PYTEST_THREADPOOL_LDFLAGS", "").split(),
        )
    ]
)
