"""Paginators: how a vendor's list is walked page after page, with the guards written once.

A hook picks the paginator its vendor's paging calls for and hands :func:`pages` a function that
fetches one page for a token. The loop, the repeated-token guard (a vendor answering the same
cursor, page or URL again would otherwise make paging endless) and the empty-page rule live here:

- :class:`CursorPaginator`: an opaque cursor read from each answer (the PSA's ``next_cursor``,
  HubSpot's ``paging.next.after``).
- :class:`PageNumberPaginator`: ``page`` 1, 2, … until a short page, or up to the answer's page count
  (Xero's Accounting and Projects APIs).
- :class:`OffsetPaginator`: a start position advanced by the rows received, until a short page
  (QuickBooks' ``STARTPOSITION``).
- :class:`NextUrlPaginator`: the next page's URL from the answer, until it says it is done
  (Salesforce's ``nextRecordsUrl`` / ``done``).
- :func:`keyset_windows`: windows of a query ordered by a key, each starting after the last key of
  the one before, for searches capped at a number of results (HubSpot's 10,000, a SOQL ``LIMIT``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Hashable, Iterator
from typing import Any, Generic, TypeVar

from backbone.http import RepeatedCursorError

Token = TypeVar("Token", bound=Hashable)
Key = TypeVar("Key", bound=Hashable)
Page = list[dict[str, Any]]


class Paginator(ABC, Generic[Token]):
    """Walks one list. ``token`` is what the next request needs; ``finished`` ends the walk.

    ``continue_if_empty``: whether a page without records but with a next token goes on (a cursor
    API may answer an empty page mid-list) or ends the list (a short page says the list is over).
    """

    continue_if_empty = False

    def __init__(self, first: Token | None, *, description: str):
        self.token = first
        self.description = description
        self.finished = False
        self._seen: set[Token] = {first} if first is not None else set()

    @abstractmethod
    def next_token(self, body: Any, records: Page) -> Token | None:
        """The token of the page after this answer, or None when there is none."""

    def advance(self, body: Any, records: Page) -> None:
        following = self.next_token(body, records) if records or self.continue_if_empty else None
        if following is None:
            self.finished = True
            return
        if following in self._seen:
            raise RepeatedCursorError(f"{self.description}: the vendor repeated {following!r}; stopping instead of looping")
        self._seen.add(following)
        self.token = following


class CursorPaginator(Paginator[str]):
    """An opaque cursor read from each answer by ``read_cursor``; empty pages go on while one is offered."""

    continue_if_empty = True

    def __init__(self, read_cursor: Callable[[Any], str | None], *, description: str, continue_if_empty: bool = True):
        super().__init__(None, description=description)
        self.read_cursor = read_cursor
        self.continue_if_empty = continue_if_empty

    def next_token(self, body: Any, records: Page) -> str | None:
        cursor = self.read_cursor(body)
        return str(cursor) if cursor else None


class PageNumberPaginator(Paginator[int]):
    """``page`` from 1. Ends on a short page, or, when ``page_count`` reads the number of pages from
    the answer, after the last one; ``served_page`` reads which page the vendor says it served, so a
    page served twice is caught."""

    def __init__(
        self,
        *,
        page_size: int,
        description: str,
        page_count: Callable[[Any], int | None] | None = None,
        served_page: Callable[[Any], int | None] | None = None,
    ):
        super().__init__(1, description=description)
        self.page_size = page_size
        self.page_count = page_count
        self.served_page = served_page
        self.continue_if_empty = page_count is not None

    def next_token(self, body: Any, records: Page) -> int | None:
        served = (self.served_page(body) if self.served_page else None) or self.token or 1
        if self.page_count is not None:
            return served + 1 if served < (self.page_count(body) or 1) else None
        return served + 1 if len(records) >= self.page_size else None


class OffsetPaginator(Paginator[int]):
    """A start position (from ``first``) advanced by the number of rows received, until a short page."""

    def __init__(self, *, page_size: int, description: str, first: int = 0):
        super().__init__(first, description=description)
        self.page_size = page_size

    def next_token(self, body: Any, records: Page) -> int | None:
        return (self.token or 0) + len(records) if len(records) >= self.page_size else None


class NextUrlPaginator(Paginator[str]):
    """The next page's URL from the answer (``next_url``), unless ``done`` says the list is complete."""

    continue_if_empty = True

    def __init__(self, next_url: Callable[[Any], str | None], *, description: str, done: Callable[[Any], bool] = lambda body: False):
        super().__init__(None, description=description)
        self.next_url = next_url
        self.done = done

    def next_token(self, body: Any, records: Page) -> str | None:
        return None if self.done(body) else self.next_url(body)


def pages(paginator: Paginator[Token], fetch: Callable[[Token | None], Any], records: Callable[[Any], Page | None]) -> Iterator[Page]:
    """Yield each non-empty page: ``fetch(token)`` gives an answer, ``records(answer)`` its records."""
    while not paginator.finished:
        body = fetch(paginator.token)
        found = list(records(body) or [])
        paginator.advance(body, found)  # first, so a caller looking at ``finished`` sees this page's verdict
        if found:
            yield found


def keyset_windows(
    read_window: Callable[[Key | None], Generator[Page, None, bool]], key_of: Callable[[dict[str, Any]], Key], *, description: str
) -> Iterator[Page]:
    """Yield the pages of windows over a key-ordered query. ``read_window(after)`` yields the pages
    of the window after key ``after`` (None: the first) and returns whether another window may
    follow; the next one starts after the key of the last record seen. A window that ends on a key
    already used as a start would repeat for ever and raises :class:`RepeatedCursorError`."""
    after: Key | None = None
    used: set[Key] = set()
    while True:
        last: dict[str, Any] | None = None
        window = read_window(after)
        while True:
            try:
                page = next(window)
            except StopIteration as stop:
                more = bool(stop.value)
                break
            if page:
                last = page[-1]
                yield page
        if not more or last is None:
            return
        after = key_of(last)
        if after in used:
            raise RepeatedCursorError(f"{description}: a window ended on {after!r} again; stopping instead of looping")
        used.add(after)
