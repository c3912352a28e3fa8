"""A reader of Server-Sent Events (the WHATWG format) for ``GET /v1/telemetry``."""

from __future__ import annotations

import dataclasses
import json
from typing import IO, Any, Iterator, List, Optional


@dataclasses.dataclass
class SseEvent:
    """One event: its ``event`` name (``message`` if none was given), ``data`` and ``id``."""

    event: str
    data: str
    id: Optional[str] = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


def read_events(stream: IO[bytes]) -> Iterator[SseEvent]:
    """Yields the events of an SSE byte stream until it ends.

    Lines are split on CRLF, LF or CR; ``data:`` lines of one event are joined with LF; lines
    starting with ``:`` (keep-alive comments) are skipped; an event is dispatched at a blank
    line, and an event with no data is not dispatched (as the standard says).
    """
    event, data, last_id = "", [], None  # type: str, List[str], Optional[str]
    pending = b""
    while True:
        chunk = stream.readline()
        if not chunk:
            return
        pending += chunk
        # readline splits on LF only; a lone CR also ends a line.
        lines = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if line == "":
                if data:
                    yield SseEvent(event or "message", "\n".join(data), last_id)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                last_id = value
            # "retry" and unknown fields are ignored.
