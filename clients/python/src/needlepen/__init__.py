"""needlepen: the Python jig kit for needled.

- :class:`Needled`: a typed client of the HTTP API (:mod:`needlepen.types`), every refusal an
  :class:`ApiError` with the HTTP status and the stable code (:class:`ErrorCode`);
- :func:`read_events` / :meth:`Needled.telemetry`: the SSE telemetry stream;
- :class:`SimNeedled`: a needled on the simulated rig as a child process (port 0, temp data
  directory, ready once ``/v1/health`` answers);
- :mod:`needlepen.htf`: OpenHTF plugs (``pip install needlepen[openhtf]``);
- pytest fixtures ``needled_sim``, ``operator``, ``technician`` (registered as a pytest plugin).
"""

from .client import DEFAULT_URL, Needled, token_from_file
from .errors import ApiError, ErrorCode, NeedledError, Unreachable
from .sim import SimNeedled, find_binary
from .sse import SseEvent, read_events
from .types import CreateSession, Setpoints

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "CreateSession",
    "ErrorCode",
    "Needled",
    "NeedledError",
    "Setpoints",
    "SimNeedled",
    "SseEvent",
    "Unreachable",
    "find_binary",
    "read_events",
    "token_from_file",
]

__version__ = "0.1.0"
