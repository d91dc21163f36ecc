"""What every sandbox store shares: a lock that is left out when the state is pickled to disk."""

from __future__ import annotations

import threading
from typing import Any


class PicklableLockMixin:
    """Pickle everything but ``_lock``; a restored store gets a fresh lock."""

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
