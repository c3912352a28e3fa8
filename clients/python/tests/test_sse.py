"""The SSE reader against the format's own examples, without a server."""

import io

from needlepen import read_events


def events(text: bytes):
    return list(read_events(io.BytesIO(text)))


def test_events_are_split_at_blank_lines_with_names_ids_and_joined_data():
    got = events(b"event: telemetry\ndata: {\"a\": 1}\n\n: keep-alive\n\ndata: one\ndata: two\nid: 7\n\n")
    assert [(e.event, e.data, e.id) for e in got] == [
        ("telemetry", '{"a": 1}', None),
        ("message", "one\ntwo", "7"),
    ]
    assert got[0].json() == {"a": 1}


def test_crlf_and_cr_line_ends_and_no_space_after_the_colon():
    got = events(b"data:x\r\n\r\ndata: y\r\r")
    assert [e.data for e in got] == ["x", "y"]


def test_an_event_without_data_or_an_unterminated_one_is_not_dispatched():
    assert events(b"event: nothing\n\ndata: cut off") == []
