"""Paginators and auth classes: the loops, guards and token handling every hook shares (no network)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backbone.hooks.auth import ApiKeyBasicAuth, BearerTokenAuth, RefreshingBearerAuth
from backbone.http import RepeatedCursorError
from backbone.paging import CursorPaginator, NextUrlPaginator, OffsetPaginator, PageNumberPaginator, keyset_windows, pages


def served(answers: dict[Any, dict[str, Any]], asked: list[Any]):
    def fetch(token: Any) -> dict[str, Any]:
        asked.append(token)
        return answers[token]

    return fetch


def test_a_cursor_walk_goes_on_over_an_empty_page_and_ends_without_a_cursor():
    answers = {None: {"items": [{"id": 1}], "next": "b"}, "b": {"items": [], "next": "c"}, "c": {"items": [{"id": 2}], "next": None}}
    asked: list[Any] = []
    paginator = CursorPaginator(lambda body: body["next"], description="t")
    assert list(pages(paginator, served(answers, asked), lambda body: body["items"])) == [[{"id": 1}], [{"id": 2}]]
    assert asked == [None, "b", "c"]


def test_a_cursor_answered_again_stops_the_walk():
    answers = {None: {"items": [{"id": 1}], "next": "b"}, "b": {"items": [{"id": 2}], "next": "b"}}
    with pytest.raises(RepeatedCursorError, match="repeated 'b'"):
        list(pages(CursorPaginator(lambda body: body["next"], description="t"), served(answers, []), lambda body: body["items"]))


def test_an_empty_page_ends_a_walk_that_does_not_continue_if_empty():
    answers = {None: {"items": [], "next": "b"}}
    paginator = CursorPaginator(lambda body: body["next"], description="t", continue_if_empty=False)
    assert list(pages(paginator, served(answers, []), lambda body: body["items"])) == []


def test_page_numbers_end_on_a_short_page():
    answers = {1: {"rows": [{}, {}]}, 2: {"rows": [{}, {}]}, 3: {"rows": [{}]}}
    asked: list[Any] = []
    walked = list(pages(PageNumberPaginator(page_size=2, description="t"), served(answers, asked), lambda body: body["rows"]))
    assert [len(p) for p in walked] == [2, 2, 1] and asked == [1, 2, 3]


def test_page_numbers_follow_the_page_count_and_catch_a_page_served_twice():
    def paginator() -> PageNumberPaginator:
        return PageNumberPaginator(page_size=500, description="t", page_count=lambda b: b["count"], served_page=lambda b: b["page"])

    answers = {1: {"page": 1, "count": 2, "items": [{}]}, 2: {"page": 2, "count": 2, "items": [{}]}}
    assert len(list(pages(paginator(), served(answers, []), lambda body: body["items"]))) == 2
    stuck = {1: {"page": 1, "count": 3, "items": [{}]}, 2: {"page": 1, "count": 3, "items": []}}
    with pytest.raises(RepeatedCursorError):
        list(pages(paginator(), served(stuck, []), lambda body: body["items"]))


def test_offsets_advance_by_the_rows_received_from_the_first_position():
    answers = {1: {"rows": [{}, {}]}, 3: {"rows": [{}, {}]}, 5: {"rows": []}}
    asked: list[Any] = []
    list(pages(OffsetPaginator(page_size=2, first=1, description="t"), served(answers, asked), lambda body: body["rows"]))
    assert asked == [1, 3, 5]


def test_next_urls_until_done():
    answers = {None: {"records": [{}], "done": False, "next": "/q/2"}, "/q/2": {"records": [{}], "done": True, "next": "/q/3"}}
    asked: list[Any] = []
    paginator = NextUrlPaginator(lambda body: body["next"], done=lambda body: body["done"], description="t")
    assert len(list(pages(paginator, served(answers, asked), lambda body: body["records"]))) == 2 and asked == [None, "/q/2"]


def test_keyset_windows_start_after_the_last_key_and_stop_on_a_short_window():
    data = [{"id": n} for n in range(1, 8)]
    starts: list[Any] = []

    def window(after: int | None):
        starts.append(after)
        chosen = [r for r in data if after is None or r["id"] > after][:3]
        yield chosen
        return len(chosen) == 3

    walked = [r["id"] for page in keyset_windows(window, lambda r: r["id"], description="t") for r in page]
    assert walked == list(range(1, 8)) and starts == [None, 3, 6]


def test_a_window_that_ends_on_the_same_key_again_stops():
    def window(after: int | None):
        yield [{"id": 5}]
        return True

    with pytest.raises(RepeatedCursorError, match="window ended"):
        list(keyset_windows(window, lambda r: r["id"], description="t"))


def prepared(auth: Any) -> requests.PreparedRequest:
    return auth(requests.Request("GET", "https://vendor.example/x").prepare())


def test_fixed_bearer_and_api_key_basic_auth_set_the_header():
    assert prepared(BearerTokenAuth("t0k")).headers["Authorization"] == "Bearer t0k"
    assert prepared(ApiKeyBasicAuth("key")).headers["Authorization"] == "Basic a2V5Ong="  # base64("key:x")


class OneShotConnection:
    def __init__(self, status: int):
        self.status = status
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code, response.request, response._content = self.status, request, b"{}"
        return response


def answer(request: requests.PreparedRequest, status: int, connection: OneShotConnection) -> requests.Response:
    response = requests.Response()
    response.status_code, response.request, response._content, response.connection = status, request, b"{}", connection
    return response


def test_refreshing_bearer_resends_once_with_a_fresh_token_on_401():
    tokens = iter(["old", "new", "newer"])
    refreshed: list[bool] = []

    def token(*, force_refresh: bool = False) -> str:
        refreshed.append(force_refresh)
        return next(tokens)

    auth = RefreshingBearerAuth(token)
    request = prepared(auth)
    connection = OneShotConnection(401)
    final = request.hooks["response"][0](answer(request, 401, connection))
    assert [r.headers["Authorization"] for r in connection.sent] == ["Bearer new"] and refreshed == [False, True]
    assert final.status_code == 401 and final.request.headers["Authorization"] == "Bearer new"
    assert auth._resend_once_on_401(final) is final  # a second 401 is returned as it is, never a loop
