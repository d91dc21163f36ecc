"""``load_settings``: the environment as it is now, built again only when a ``BACKBONE_*`` variable changed."""

from __future__ import annotations

import pytest

from backbone.settings import load_settings


def test_settings_follow_the_environment_and_are_reused_while_it_is_unchanged(monkeypatch):
    monkeypatch.setenv("BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE", "12")
    first = load_settings()
    assert first.qbo_batch_requests_per_minute == 12
    assert load_settings() is first
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert load_settings() is first
    monkeypatch.setenv("BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE", "13")
    assert load_settings().qbo_batch_requests_per_minute == 13
    monkeypatch.delenv("BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE")
    assert load_settings().qbo_batch_requests_per_minute == 38


def test_a_wrong_value_is_refused_every_time_it_is_read(monkeypatch):
    monkeypatch.setenv("BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE", "many")
    for _ in range(2):
        with pytest.raises(ValueError, match="BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE"):
            load_settings()
