"""Reading ahead and writing behind in the posting loops (``backbone.flows.pipelining``)."""

from __future__ import annotations

import threading

import pytest

from backbone.flows.pipelining import BackgroundWriter, read_ahead


def test_read_ahead_hands_out_every_item_in_order_reading_the_next_one_in_the_background():
    readers: list[str] = []

    def source():
        for n in range(5):
            readers.append(threading.current_thread().name)
            yield n

    assert list(read_ahead(source())) == [0, 1, 2, 3, 4]
    assert all(name.startswith("read-ahead") for name in readers)


def test_an_item_read_ahead_but_never_handed_out_goes_to_unused():
    unused: list[int] = []
    ahead = read_ahead(iter(range(10)), unused=unused.append)
    for item in ahead:
        if item == 2:
            break
    ahead.close()
    assert unused == [3]  # read while 2 was worked on, never used


def test_a_caller_error_also_returns_the_item_read_ahead():
    unused: list[int] = []
    with pytest.raises(ValueError):
        for item in read_ahead(iter(range(10)), unused=unused.append):
            if item == 0:
                raise ValueError("accounting is down")
    assert unused == [1]


def test_a_source_that_fails_raises_its_error_to_the_caller():
    def source():
        yield 1
        raise RuntimeError("the warehouse went away")

    got = []
    with pytest.raises(RuntimeError, match="went away"):
        for item in read_ahead(source()):
            got.append(item)
    assert got == [1]


def test_background_writes_run_in_order_and_close_waits_for_all():
    written: list[int] = []
    with BackgroundWriter() as writer:
        for n in range(50):
            writer.submit(written.append, n)
    assert written == list(range(50))


def test_a_failed_write_stops_the_next_submit_and_close():
    started = threading.Event()

    def fail() -> None:
        started.set()
        raise OSError("the warehouse went away")

    writer = BackgroundWriter()
    writer.submit(fail)
    started.wait(5)
    writer._pending[0].exception(timeout=5)  # the write has failed by now
    with pytest.raises(OSError, match="went away"):
        writer.submit(lambda: None)
    writer = BackgroundWriter()
    writer.submit(fail)
    with pytest.raises(OSError, match="went away"):
        writer.close()


def test_leaving_with_an_error_keeps_that_error_and_lets_earlier_writes_land():
    written: list[int] = []
    with pytest.raises(KeyError):
        with BackgroundWriter() as writer:
            writer.submit(written.append, 1)
            raise KeyError("posting failed")
    assert written == [1]
