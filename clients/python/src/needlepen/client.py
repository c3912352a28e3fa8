"""A typed client of needled's HTTP API, on the standard library (urllib)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, cast

from .errors import ApiError, ErrorCode, NeedledError, Unreachable
from .sse import read_events
from .types import (
    CartridgeRecord,
    CreateSession,
    SessionRecord,
    Setpoints,
    SimTruth,
    Status,
    Telemetry,
)

DEFAULT_URL = "http://127.0.0.1:7878"


def token_from_file(path: str, role: str = "operator") -> str:
    """The first token of ``role`` in needled's generated ``tokens.json``."""
    with open(path, encoding="utf-8") as f:
        tokens = json.load(f)
    for t in tokens:
        if t.get("role") == role:
            return str(t["token"])
    raise ValueError(f"{path}: no {role} token")


class Needled:
    """needled's API as Python calls. Every refusal raises :class:`ApiError` with the HTTP
    status and the stable code; a refused call changed nothing. No call retries by itself.

    >>> api = Needled("http://127.0.0.1:7878", token)          # doctest: +SKIP
    >>> api.home(); api.wait_for(lambda s: s["state"] == "Idle")  # doctest: +SKIP
    """

    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: Optional[Any]) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        return req

    def raw(self, method: str, path: str, body: Optional[Any] = None) -> str:
        """The response text of one call; :class:`ApiError` on any 4xx or 5xx."""
        req = self._request(method, path, body)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                err = json.loads(text)["error"]
                code, message = str(err["code"]), str(err.get("message", ""))
            except (ValueError, KeyError, TypeError):
                code, message = "", text
            raise ApiError(method, path, e.code, code, message) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            raise Unreachable(method, path, getattr(e, "reason", e)) from None

    def call(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        """One call, its JSON answer parsed."""
        text = self.raw(method, path, body)
        return json.loads(text) if text else None

    # ------------------------------------------------------------------ service

    def health(self) -> Dict[str, Any]:
        """``GET /v1/health`` (no token needed)."""
        return cast(Dict[str, Any], self.call("GET", "/v1/health"))

    def status(self) -> Status:
        return cast(Status, self.call("GET", "/v1/status"))

    def version(self) -> Dict[str, Any]:
        return cast(Dict[str, Any], self.call("GET", "/v1/version"))

    def console_config(self) -> Dict[str, Any]:
        """Areas with their ceilings, the checklist, limits: what the console's forms offer."""
        return cast(Dict[str, Any], self.call("GET", "/v1/console/config"))

    def checklist_ids(self, required_only: bool = False) -> List[str]:
        """The configured checklist's item ids."""
        items = self.console_config()["checklist"]
        return [i["id"] for i in items if i.get("required", True) or not required_only]

    def home(self) -> None:
        self.call("POST", "/v1/home")

    def clear_faults(self, reason: str) -> None:
        self.call("POST", "/v1/faults/clear", {"reason": reason})

    def events(self, after: int = 0, limit: int = 100) -> List[Dict[str, Any]]:
        return cast(List[Dict[str, Any]], self.call("GET", f"/v1/events?after={after}&limit={limit}")["events"])

    # ------------------------------------------------------------------ sessions

    def create_session(self, req: CreateSession) -> SessionRecord:
        return cast(SessionRecord, self.call("POST", "/v1/sessions", req.body()))

    def session(self, session_id: int) -> SessionRecord:
        return cast(SessionRecord, self.call("GET", f"/v1/sessions/{session_id}"))

    def confirm_checklist(self, session_id: int, answers: Dict[str, bool]) -> SessionRecord:
        """Merges checklist answers into a created or bound session (before arming)."""
        return cast(
            SessionRecord,
            self.call("PUT", f"/v1/sessions/{session_id}/checklist", {"checklist": dict(answers)}),
        )

    def bind_cartridge(self, session_id: int) -> CartridgeRecord:
        return cast(CartridgeRecord, self.call("POST", f"/v1/sessions/{session_id}/cartridge"))

    def arm(self, session_id: int, setpoints: Setpoints) -> SessionRecord:
        return cast(SessionRecord, self.call("POST", f"/v1/sessions/{session_id}/arm", setpoints.body()))

    def start(self, session_id: int) -> SessionRecord:
        return cast(SessionRecord, self.call("POST", f"/v1/sessions/{session_id}/start"))

    def pause(self, session_id: int) -> SessionRecord:
        return cast(SessionRecord, self.call("POST", f"/v1/sessions/{session_id}/pause"))

    def set_setpoints(self, session_id: int, setpoints: Setpoints) -> SessionRecord:
        return cast(
            SessionRecord, self.call("PUT", f"/v1/sessions/{session_id}/setpoints", setpoints.body())
        )

    def end(self, session_id: int, reason: Optional[str] = None) -> SessionRecord:
        body = None if reason is None else {"reason": reason}
        return cast(SessionRecord, self.call("POST", f"/v1/sessions/{session_id}/end", body))

    def report(self, session_id: int) -> Dict[str, Any]:
        return cast(Dict[str, Any], self.call("GET", f"/v1/sessions/{session_id}/report?format=json"))

    def report_csv(self, session_id: int) -> str:
        return self.raw("GET", f"/v1/sessions/{session_id}/report?format=csv")

    def cartridge(self, cartridge_id: str) -> CartridgeRecord:
        return cast(CartridgeRecord, self.call("GET", f"/v1/cartridges/{cartridge_id}"))

    def recall_lot(self, lot: str, reason: str) -> List[str]:
        return cast(List[str], self.call("POST", f"/v1/lots/{lot}/recall", {"reason": reason})["in_use"])

    # ------------------------------------------------------------------ sim (technician)

    def sim_truth(self) -> SimTruth:
        """The simulated rig's physical truth: the jig's instrument on the sim."""
        return cast(SimTruth, self.call("GET", "/v1/sim/truth"))

    def sim_inject(self, action: str, **fields: Any) -> Dict[str, Any]:
        """One sim control (``seat_new_cartridge``, ``estop``, ``pedal``, ...)."""
        return cast(Dict[str, Any], self.call("POST", "/v1/sim/inject", {"action": action, **fields}))

    def wait_rig_time(self, us: int, timeout_s: float = 30.0) -> None:
        """Waits until ``us`` of rig time have passed (the sim's clock, from its truth)."""
        start = int(self.sim_truth()["sim_time_us"])
        deadline = time.monotonic() + timeout_s
        while int(self.sim_truth()["sim_time_us"]) - start < us:
            if time.monotonic() > deadline:
                raise TimeoutError("the rig's clock did not advance")
            time.sleep(0.01)

    # ------------------------------------------------------------------ streams and waits

    def telemetry(self, timeout_s: float = 10.0) -> Iterator[Telemetry]:
        """``GET /v1/telemetry`` as an iterator of samples, until the caller stops or the
        stream ends. ``timeout_s`` bounds the wait for each event."""
        req = self._request("GET", "/v1/telemetry", None)
        req.add_header("Accept", "text/event-stream")
        try:
            resp = urllib.request.urlopen(req, timeout=timeout_s)
        except urllib.error.HTTPError as e:
            raise ApiError("GET", "/v1/telemetry", e.code, _code_of(e), "") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            raise Unreachable("GET", "/v1/telemetry", getattr(e, "reason", e)) from None
        with resp:
            for event in read_events(resp):
                if event.event == "telemetry":
                    yield cast(Telemetry, event.json())

    def wait_for(
        self,
        done: Callable[[Status], bool],
        what: str = "the condition",
        timeout_s: float = 30.0,
        poll_s: float = 0.01,
    ) -> Status:
        """Polls ``/v1/status`` until ``done(status)``; :class:`TimeoutError` after
        ``timeout_s`` (a bound for a stuck rig, not a measurement)."""
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.status()
            if done(s):
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; last state {s.get('state')}")
            time.sleep(poll_s)

    def home_and_wait(self, timeout_s: float = 30.0) -> Status:
        """Homes the depth axis and waits until the controller is Idle and homed."""
        self.home()

        def homed(s: Status) -> bool:
            if s["state"] == "Fault":
                raise NeedledError(f"homing faulted: {s['faults']} (last {s['last_fault']})")
            return s["state"] == "Idle" and s["homed"]

        return self.wait_for(homed, "homing", timeout_s)

    def set_depth_when_settled(self, session_id: int, depth_um: int, timeout_s: float = 10.0) -> SessionRecord:
        """Sets a new depth, retrying while the core answers ``depth_not_settled``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.set_setpoints(session_id, Setpoints(depth_um=depth_um))
            except ApiError as e:
                if e.code != ErrorCode.DEPTH_NOT_SETTLED or time.monotonic() > deadline:
                    raise
            time.sleep(0.005)


def _code_of(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read().decode())["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""
