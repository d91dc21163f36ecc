"""Overlapping database round trips with the work between them, for the posting loops.

A posting loop reads a batch from the outbox, sends it, and records the answers. Each database
round trip leaves the Python side idle (psycopg2 releases the GIL while it waits) and the server
idle while Python builds requests; :func:`read_ahead` reads the next batch while this one is
sent, and :class:`BackgroundWriter` records answers while the next ones are sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()


def read_ahead(source: Iterator[T], *, unused: Callable[[T], None] | None = None) -> Iterator[T]:
    """``source``'s items, each read in a background thread while the caller works on the one
    before. When the caller stops early (a ``break`` or an error), the item already read ahead was
    never handed out: ``unused`` gets it (e.g. to give back the attempts its reading counted)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    future: Future[Any] = pool.submit(next, source, _END)
    try:
        while (item := future.result()) is not _END:
            future = pool.submit(next, source, _END)
            yield item
    finally:
        left = _END
        try:
            left = future.result()
        except Exception:  # noqa: BLE001 - the caller has stopped already; its own error is the one that counts
            log.debug("the batch read ahead could not be read", exc_info=True)
        if left is not _END and unused is not None:
            unused(left)
        pool.shutdown(wait=True)


class BackgroundWriter:
    """Runs writes one after another on a background thread, in the order they were submitted.

    The first write that fails stops the caller at its next :meth:`submit` (or at :meth:`close`)
    with that error, so a loop never goes on sending while its answers cannot be recorded."""

    def __init__(self, name: str = "writer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[Future[None]] = []

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self._raise_failed()
        self._pending.append(self._pool.submit(write, *args))

    def close(self) -> None:
        """Wait for every write; raise the first failure."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)

    def _raise_failed(self) -> None:
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            future.result()  # raises a failed write's error (once: it is no longer pending)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:  # the writes already submitted land either way
            self.close()
        except Exception:
            if exc_type is None:
                raise
            log.warning("a background write failed while the loop was stopping", exc_info=True)  # the loop's own error counts
