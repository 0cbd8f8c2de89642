"""``tmp_path``'s base directory is created lazily on first use by pytest; two tests asking for
it at the same moment would each create one. Serialise that first creation for threaded runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _pytest.tmpdir import TempPathFactory


@contextmanager
def serialised_basetemp() -> Iterator[None]:
    original = TempPathFactory.getbasetemp
    lock = threading.Lock()

    def getbasetemp(self: TempPathFactory) -> Path:
        if self._basetemp is not None:
            return self._basetemp
        with lock:
            return original(self)

    TempPathFactory.getbasetemp = getbasetemp  # type: ignore[method-assign]
    try:
        yield
    finally:
        TempPathFactory.getbasetemp = original  # type: ignore[method-assign]
