"""OpenHTF plugs for a needled rig: the device under test (its API) and, on the sim, the jig's
instrument (the simulated rig's physical truth).

A jig author writes phases that take the plugs and record measurements with units and limits:

    import openhtf as htf
    from openhtf.util import units
    from needlepen.htf import NeedledPlug, SimJigPlug, configure

    configure(url, technician_token)

    @htf.plug(pen=NeedledPlug, jig=SimJigPlug)
    @htf.measures(htf.Measurement("depth_um").with_units(units.MICROMETRE_MICRON)
                  .in_range(980, 1020))
    def depth_1000(test, pen, jig):
        pen.set_depth(1000)
        test.measurements.depth_um = jig.settled_depth_um(pen)

OpenHTF builds each plug with no arguments, so the address and token are set once with
:func:`configure` (or the ``NEEDLED_URL`` / ``NEEDLED_TOKEN`` environment variables) before
the test runs. A session the plug opened and that is still open when the test ends is ended
in ``tearDown``, so a failed phase never leaves the needles armed or a cartridge bound.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Tuple

from openhtf.plugs import BasePlug

from .client import DEFAULT_URL, Needled
from .errors import ApiError, NeedledError
from .types import CreateSession, SessionRecord, Setpoints, Status

_settings: Dict[str, Optional[str]] = {"url": None, "token": None}


def configure(url: str, token: str) -> None:
    """The needled the plugs talk to, and the bearer token (technician for the sim's jig)."""
    _settings["url"] = url
    _settings["token"] = token


def _client() -> Needled:
    url = _settings["url"] or os.environ.get("NEEDLED_URL") or DEFAULT_URL
    token = _settings["token"] or os.environ.get("NEEDLED_TOKEN")
    if not token:
        raise NeedledError("no token: call needlepen.htf.configure(url, token) or set NEEDLED_TOKEN")
    return Needled(url, token)


class NeedledPlug(BasePlug):
    """The pen under test, through needled's API. ``api`` is the full client."""

    def __init__(self) -> None:
        self.api = _client()
        self.session_id: Optional[int] = None

    def home(self, timeout_s: float = 30.0) -> Status:
        """Homes the depth axis and waits until Idle and homed."""
        return self.api.home_and_wait(timeout_s)

    def open_session(self, area: str, operator: str = "jig", subject_ref: Optional[str] = None) -> SessionRecord:
        """Creates a session with every configured checklist item confirmed (a jig, not a
        treatment) and binds the seated cartridge."""
        checklist = {i: True for i in self.api.checklist_ids()}
        subject = subject_ref or f"jig-{int(time.time() * 1000)}"
        record = self.api.create_session(CreateSession(operator, subject, area, checklist))
        self.session_id = record["id"]
        self.api.bind_cartridge(record["id"])
        return self.api.session(record["id"])

    def _id(self) -> int:
        if self.session_id is None:
            raise NeedledError("no session: call open_session first")
        return self.session_id

    def arm(self, depth_um: int, rate_hz: float) -> SessionRecord:
        """Arms the open session; waits until the controller is Armed."""
        record = self.api.arm(self._id(), Setpoints.hz(depth_um, rate_hz))
        self.api.wait_for(lambda s: s["state"] == "Armed", "Armed")
        return record

    def set_depth(self, depth_um: int) -> SessionRecord:
        """A new depth setpoint (retried while the axis is still moving)."""
        return self.api.set_depth_when_settled(self._id(), depth_um)

    def wait_depth_stopped(self, timeout_s: float = 10.0) -> Status:
        """Waits until the controller reports the axis stopped: only when to look; the
        measurement is the jig's."""
        return self.api.wait_for(lambda s: s["depth"]["moving"] is False, "the depth axis to stop", timeout_s)

    def start(self) -> SessionRecord:
        return self.api.start(self._id())

    def pause(self) -> SessionRecord:
        return self.api.pause(self._id())

    def end(self, reason: str = "jig test finished") -> SessionRecord:
        """Ends the open session (the cartridge is spent)."""
        record = self.api.end(self._id(), reason)
        self.session_id = None
        return record

    def tearDown(self) -> None:
        if self.session_id is not None:
            try:
                self.api.end(self.session_id, "jig test ended early")
            except (ApiError, NeedledError) as e:
                self.logger.warning("could not end session %s: %s", self.session_id, e)
            self.session_id = None


class SimJigPlug(BasePlug):
    """The jig's instruments on the simulated rig: the physics' truth (``/v1/sim/truth``),
    never the controller's telemetry. On a bench, replace this plug with one for your gauge
    and tachometer; the phases stay as they are."""

    def __init__(self) -> None:
        self.api = _client()

    def seat_new_cartridge(self, cartridge_id: Optional[str] = None) -> None:
        """Seats a fresh cartridge whose tag the sim service signs (sim only)."""
        fields = {} if cartridge_id is None else {"id": cartridge_id}
        self.api.sim_inject("seat_new_cartridge", **fields)

    def depth_um(self) -> Tuple[float, int]:
        """(depth in µm, jig time in µs): one reading."""
        t = self.api.sim_truth()
        return float(t["depth_um"]), int(t["sim_time_us"])

    def settled_depth_um(self, pen: NeedledPlug, agree_um: float = 2.0, apart_us: int = 20_000,
                         timeout_s: float = 10.0) -> float:
        """Waits for the pen to report the axis stopped, then for two readings at least
        ``apart_us`` of rig time apart to agree within ``agree_um``; returns the last."""
        pen.wait_depth_stopped(timeout_s)
        deadline = time.monotonic() + timeout_s
        a_um, a_us = self.depth_um()
        while True:
            time.sleep(0.005)
            b_um, b_us = self.depth_um()
            if b_us - a_us >= apart_us:
                if abs(b_um - a_um) <= agree_um:
                    return b_um
                a_um, a_us = b_um, b_us
            if time.monotonic() > deadline:
                raise TimeoutError("the jig's depth reading did not settle")

    def rate_hz_over(self, window_us: int, timeout_s: float = 30.0) -> float:
        """The stroke rate the rig's cam made over ``window_us`` of rig time (strokes counted
        by the physics, divided by the rig time between the two readings)."""
        first = self.api.sim_truth()
        deadline = time.monotonic() + timeout_s
        while True:
            time.sleep(0.01)
            t = self.api.sim_truth()
            span_us = int(t["sim_time_us"]) - int(first["sim_time_us"])
            if span_us >= window_us:
                return (int(t["strokes"]) - int(first["strokes"])) * 1e6 / span_us
            if time.monotonic() > deadline:
                raise TimeoutError("the rig's clock did not advance")

    def wait_rig_time(self, us: int, timeout_s: float = 30.0) -> None:
        """Waits until ``us`` of rig time have passed (virtual time on the sim)."""
        self.api.wait_rig_time(us, timeout_s)


__all__: List[str] = ["NeedledPlug", "SimJigPlug", "configure"]
