"""The output collector: caps, truncation flags, and the supervisor's trailer."""

from __future__ import annotations

import json

from assay.execution_engine.output import TRAILER_RESERVE, OutputCollector, trailer_marker

NONCE = "ab" * 16


def trailer(report: dict[str, object], nonce: str = NONCE) -> bytes:
    return trailer_marker(nonce) + json.dumps(report).encode() + b"\n"


def test_output_under_the_cap_is_kept_whole_and_the_trailer_is_removed() -> None:
    collector = OutputCollector(limit=100, nonce=NONCE)
    assert collector.feed("stdout", b"hello\n")
    assert collector.feed("stderr", b"warn\n")
    assert collector.feed("stderr", trailer({"exit_code": 3, "cpu_time_seconds": 0.5}))
    out = collector.finish()
    assert (out.stdout, out.stderr) == (b"hello\n", b"warn\n")
    assert not (out.stdout_truncated or out.stderr_truncated or out.over_limit)
    assert out.trailer is not None
    assert out.trailer.exit_code == 3 and out.trailer.cpu_time_seconds == 0.5


def test_output_beyond_the_cap_stops_the_run_and_keeps_exactly_the_cap() -> None:
    collector = OutputCollector(limit=10, nonce=NONCE)
    assert collector.feed("stdout", b"x" * 8)
    assert not collector.feed("stdout", b"y" * (TRAILER_RESERVE + 10))
    out = collector.finish()
    assert out.over_limit and out.stdout_truncated and not out.stderr_truncated
    assert out.stdout == b"x" * 8 + b"y" * 2


def test_small_overflow_within_the_reserve_is_still_a_violation() -> None:
    collector = OutputCollector(limit=10, nonce=NONCE)
    assert collector.feed("stdout", b"x" * 8)
    assert collector.feed("stderr", b"e" * 5)
    out = collector.finish()
    assert out.over_limit and out.stderr_truncated
    assert len(out.stdout) + len(out.stderr) == 10


def test_a_forged_trailer_without_the_nonce_is_just_output() -> None:
    forged = trailer({"exit_code": 0}, nonce="00" * 16)
    collector = OutputCollector(limit=1000, nonce=NONCE)
    collector.feed("stderr", forged)
    out = collector.finish()
    assert out.trailer is None
    assert out.stderr == forged


def test_malformed_trailer_values_are_ignored() -> None:
    collector = OutputCollector(limit=1000, nonce=NONCE)
    collector.feed(
        "stderr",
        trailer({"exit_code": "zero", "cpu_time_seconds": -1, "peak_memory_bytes": True}),
    )
    out = collector.finish()
    assert out.trailer is not None
    assert out.trailer.exit_code is None
    assert out.trailer.cpu_time_seconds is None
    assert out.trailer.peak_memory_bytes is None
    assert out.stderr == b""


def test_a_trailer_cut_off_mid_line_is_dropped() -> None:
    collector = OutputCollector(limit=1000, nonce=NONCE)
    collector.feed("stderr", b"before" + trailer({"exit_code": 0})[:-5])
    out = collector.finish()
    assert out.trailer is None
    assert out.stderr == b"before"


def test_live_chunks_never_show_the_trailer_even_when_it_is_split() -> None:
    collector = OutputCollector(limit=1000, nonce=NONCE)
    line = trailer({"exit_code": 0})
    assert collector.live("stderr", b"err" + line + b"after") == b"errafter"
    assert collector.live("stderr", b"more" + line[:10]) == b"more"
    assert collector.live("stderr", line[10:-1]) == b""
    assert collector.live("stderr", b"\ntail") == b"tail"
    assert collector.live("stdout", b"out" + line) == b"out"  # stdout carries it too


def test_the_run_has_ended_once_the_trailer_is_whole_on_both_streams() -> None:
    collector = OutputCollector(limit=1000, nonce=NONCE)
    line = trailer({"exit_code": 0, "oom_kills": 0})
    collector.feed("stdout", b"x" * 700 + line[:20])
    collector.feed("stderr", line)
    assert not collector.ended
    collector.feed("stdout", line[20:])
    assert collector.ended
    out = collector.finish()
    assert (out.stdout, out.stderr) == (b"x" * 700, b"")
    assert out.trailer is not None and out.trailer.oom_kills == 0


def test_a_forged_trailer_does_not_end_the_run() -> None:
    collector = OutputCollector(limit=1000, nonce=NONCE)
    forged = trailer({"exit_code": 0}, nonce="00" * 16)
    collector.feed("stdout", forged)
    collector.feed("stderr", forged)
    assert not collector.ended
