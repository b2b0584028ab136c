"""The console's pure parts: how bytes are shown, sessions, and rates from samples."""

from __future__ import annotations

import pytest

from tidelog.broker.console.history import Sample, Samples
from tidelog.broker.console.render import matches, show_bytes
from tidelog.broker.console.sessions import MAX_SESSIONS, Sessions
from tidelog.v1 import records_pb2


def test_text_json_and_hex() -> None:
    assert show_bytes(b"hello") == {"kind": "text", "text": "hello", "size": 5, "truncated": False}
    shown = show_bytes(b'{"a": [1, 2]}')
    assert shown is not None and shown["kind"] == "json" and '"a": [' in shown["text"]
    assert show_bytes(b"{not json") == {"kind": "text", "text": "{not json", "size": 9, "truncated": False}
    assert show_bytes(b"\xff\x00\x01") == {"kind": "hex", "text": "ff 00 01", "size": 3, "truncated": False}
    assert show_bytes(None) is None  # a tombstone


def test_long_values_are_cut_and_a_character_cut_in_half_stays_text() -> None:
    long = show_bytes(b"x" * 5000, limit=100)
    assert long == {"kind": "text", "text": "x" * 100, "size": 5000, "truncated": True}
    euro = "€".encode() * 40  # 3 bytes each: a cut at 100 falls inside the 34th
    cut = show_bytes(euro, limit=100)
    assert cut is not None and cut["kind"] == "text" and cut["text"] == "€" * 33 and cut["truncated"]
    binary = show_bytes(b"\xff" * 500, limit=10)
    assert binary is not None and binary["kind"] == "hex" and binary["truncated"]
    cut_json = show_bytes(b'{"a": "' + b"y" * 200 + b'"}', limit=50)
    assert cut_json is not None and cut_json["kind"] == "text"  # half a document is not parsed


def test_the_tail_filter() -> None:
    record = records_pb2.Record(key=b"user-7", value=b"paid 30 EUR")
    assert matches(record, None, None)
    assert matches(record, b"user-7", b"EUR") and matches(record, None, b"user")
    assert not matches(record, b"user-8", None) and not matches(record, None, b"USD")


def test_sessions_expire_and_check_their_csrf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("tidelog.broker.console.sessions.time.monotonic", lambda: now[0])
    sessions = Sessions(ttl_s=60)
    session_id, session = sessions.create("secret")
    assert sessions.get(session_id) is session and sessions.get("forged") is None and sessions.get(None) is None
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("x") and not session.csrf_ok(None)
    assert "secret" not in session_id and session.csrf not in session_id
    now[0] += 61
    assert sessions.get(session_id) is None
    other_id, _ = sessions.create(None)
    sessions.drop(other_id)
    assert sessions.get(other_id) is None


def test_sessions_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tidelog.broker.console.sessions.MAX_SESSIONS", 3)
    sessions = Sessions()
    ids = [sessions.create(None)[0] for _ in range(5)]
    assert [sessions.get(i) is not None for i in ids] == [False, False, True, True, True]
    assert MAX_SESSIONS > 3


def test_rates_come_from_neighbouring_samples() -> None:
    history = Samples(10)
    history.add(Sample(100.0, {"a": 0.0}, {"a": 0.0}, {"g": 50}))
    history.add(Sample(102.0, {"a": 200.0}, {"a": 100.0}, {"g": 20}))
    history.add(Sample(104.0, {"a": 200.0, "b": 10.0}, {"a": 300.0}, {}))
    assert history.topic_rates({"a", "b"}) == {
        "a": [(102.0, 100.0, 50.0), (104.0, 0.0, 100.0)],
        "b": [(102.0, 0.0, 0.0), (104.0, 5.0, 0.0)],
    }
    assert history.group_lag({"g", "h"}) == {"g": [(100.0, 50), (102.0, 20)], "h": []}


def test_the_ring_keeps_its_window_only() -> None:
    ring = Samples(2)
    for at in (1.0, 2.0, 3.0):
        ring.add(Sample(at, {}, {}, {"g": int(at)}))
    assert ring.group_lag({"g"}) == {"g": [(2.0, 2), (3.0, 3)]}
