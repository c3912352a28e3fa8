"""needled's refusals: an exception with the HTTP status and the stable error code."""

from __future__ import annotations

from typing import Optional


class ErrorCode:
    """Stable error codes of needled's API (``{"error": {"code": ..., "message": ...}}``).

    The codes are strings: a code this list does not know yet still arrives in
    :class:`ApiError`'s ``code``. Compare with these names, not with messages.
    """

    # Requests (400)
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_PATH = "invalid_path"
    INVALID_QUERY = "invalid_query"
    UNEXPECTED_BODY = "unexpected_body"
    BODY_TOO_LARGE = "body_too_large"
    UNKNOWN_AREA = "unknown_area"
    UNKNOWN_CHECKLIST_ITEM = "unknown_checklist_item"
    SETPOINTS_REQUIRED = "setpoints_required"
    DEPTH_ABOVE_AREA_CEILING = "depth_above_area_ceiling"
    DEPTH_OUT_OF_RANGE = "depth_out_of_range"
    RATE_OUT_OF_RANGE = "rate_out_of_range"
    REASON_REQUIRED = "reason_required"
    INVALID_INPUT = "invalid_input"
    TAG_UNKNOWN_FORMAT = "tag_unknown_format"
    # Who (401, 403)
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    # What (404, 405)
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # State (409)
    CHECKLIST_INCOMPLETE = "checklist_incomplete"
    PEN_IN_USE = "pen_in_use"
    SESSION_NOT_ACTIVE = "session_not_active"
    SESSION_WRONG_STATE = "session_wrong_state"
    SESSION_INTERVAL = "session_interval"
    CARTRIDGE_MISSING = "cartridge_missing"
    CARTRIDGE_SPENT = "cartridge_spent"
    CARTRIDGE_EXPIRED = "cartridge_expired"
    CARTRIDGE_IN_USE = "cartridge_in_use"
    CARTRIDGE_BUDGET_EXHAUSTED = "cartridge_budget_exhausted"
    CARTRIDGE_MISMATCH = "cartridge_mismatch"
    LOT_RECALLED = "lot_recalled"
    TAG_TRUNCATED = "tag_truncated"
    TAG_INVALID_FIELD = "tag_invalid_field"
    TAG_BAD_MAC = "tag_bad_mac"
    WRONG_STATE = "wrong_state"
    NOT_HOMED = "not_homed"
    FAULT_LATCHED = "fault_latched"
    FAULT_CAUSE_PRESENT = "fault_cause_present"
    INTERLOCKED = "interlocked"
    DEPTH_NOT_SETTLED = "depth_not_settled"
    # The service (5xx)
    STORAGE_UNAVAILABLE = "storage_unavailable"
    STORAGE_ERROR = "storage_error"
    MONITOR_UNAVAILABLE = "monitor_unavailable"
    CONTROL_BUSY = "control_busy"
    CONTROL_STOPPED = "control_stopped"
    TAG_READ_FAILED = "tag_read_failed"


class NeedledError(Exception):
    """Anything that went wrong talking to needled."""


class ApiError(NeedledError):
    """needled refused a request: ``status`` (HTTP), ``code`` (stable), ``message`` (people).

    A refused request changed nothing on the rig or in the ledger.
    """

    def __init__(self, method: str, path: str, status: int, code: str, message: str):
        super().__init__(f"{method} {path}: HTTP {status} {code}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.message = message


class Unreachable(NeedledError):
    """needled did not answer (connection refused, timed out, not HTTP)."""

    def __init__(self, method: str, path: str, reason: object):
        super().__init__(f"{method} {path}: needled unreachable: {reason}")
        self.reason: Optional[object] = reason
