"""The history checker on hand-made histories: each kind of fault is found, and only that one."""

from __future__ import annotations

from scripts.history import Request, judge


def acked(partition: int, *values: bytes) -> Request:
    return Request(partition, values, True)


def failed(partition: int, *values: bytes) -> Request:
    return Request(partition, values, False)


def test_a_clean_history() -> None:
    requests = [acked(0, b"a", b"b"), acked(1, b"x"), failed(0, b"c"), acked(0, b"d")]
    verdict = judge(requests, {0: [b"a", b"b", b"d"], 1: [b"x"]})
    assert verdict.ok and verdict.acknowledged == 4 and verdict.found == 4
    assert "lost 0" in verdict.summary()


def test_a_failed_request_may_be_there_whole() -> None:
    assert judge([failed(0, b"a", b"b"), acked(0, b"c")], {0: [b"a", b"b", b"c"]}).ok


def test_lost() -> None:
    verdict = judge([acked(0, b"a", b"b")], {0: [b"a"]})
    assert verdict.lost == [b"b"] and not verdict.duplicated and not verdict.ok


def test_duplicated() -> None:
    verdict = judge([acked(0, b"a"), acked(0, b"b")], {0: [b"a", b"b", b"a"]})
    assert verdict.duplicated == [b"a"] and not verdict.lost and not verdict.reordered


def test_reordered() -> None:
    verdict = judge([acked(0, b"a"), acked(0, b"b"), acked(0, b"c")], {0: [b"b", b"a", b"c"]})
    assert verdict.reordered == [b"b"] and not verdict.lost  # b was read before a, which was sent first


def test_unexpected_and_misplaced() -> None:
    verdict = judge([acked(0, b"a"), acked(1, b"b")], {0: [b"a", b"b", b"zzz"], 1: []})
    assert sorted(verdict.unexpected) == [b"b", b"zzz"]
    assert verdict.lost == [b"b"]


def test_half_written_request() -> None:
    verdict = judge([failed(0, b"a", b"b", b"c")], {0: [b"a"]})
    assert verdict.partial == [(0, 1, 3)] and not verdict.lost
