"""The bodies of needled's API: dataclasses for what a jig sends, TypedDicts for what it reads.

Written on the API as needled serves it today (see the README's API table). Requests are
dataclasses, so a misspelt field is a Python error before anything is sent (needled refuses
unknown fields too); responses are TypedDicts: plain dicts with the field names typed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

try:  # Python 3.11+
    from typing import NotRequired, TypedDict
except ImportError:  # pragma: no cover - Python 3.9/3.10
    from typing_extensions import NotRequired, TypedDict  # type: ignore


# ----------------------------------------------------------------------------- requests


@dataclasses.dataclass(frozen=True)
class CreateSession:
    """``POST /v1/sessions``: a treatment session before its cartridge is bound."""

    operator: str
    subject_ref: str
    area: str
    checklist: Dict[str, bool] = dataclasses.field(default_factory=dict)
    override_reason: Optional[str] = None

    def body(self) -> Dict[str, Any]:
        b: Dict[str, Any] = {
            "operator": self.operator,
            "subject_ref": self.subject_ref,
            "area": self.area,
            "checklist": dict(self.checklist),
        }
        if self.override_reason is not None:
            b["override_reason"] = self.override_reason
        return b


@dataclasses.dataclass(frozen=True)
class Setpoints:
    """``POST .../arm`` (both needed) and ``PUT .../setpoints`` (either): depth in µm, rate in
    mHz (120 Hz is 120000)."""

    depth_um: Optional[int] = None
    rate_mhz: Optional[int] = None

    @staticmethod
    def hz(depth_um: Optional[int], rate_hz: Optional[float]) -> "Setpoints":
        """Setpoints with the rate given in Hz."""
        return Setpoints(depth_um, None if rate_hz is None else int(round(rate_hz * 1000)))

    def body(self) -> Dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# ----------------------------------------------------------------------------- responses


class ChecklistAnswer(TypedDict):
    item: str
    confirmed: bool


class SessionRecord(TypedDict):
    """A session as the ledger knows it."""

    id: int
    operator: str
    subject_ref: str
    area: str
    checklist: List[ChecklistAnswer]
    state: str  # created, bound, armed, running, paused, ended, aborted
    cartridge_id: Optional[str]
    created_at_ms: int
    started_at_ms: Optional[int]
    ended_at_ms: Optional[int]
    run_ms: int
    strokes: int
    end_reason: Optional[str]


class CartridgeRecord(TypedDict):
    """A cartridge in the ledger."""

    id: str
    lot: str
    needles: str
    expiry: str
    state: str  # new, in_use, spent
    session_id: Optional[int]
    run_ms: int
    strokes: int
    remaining_run_ms: int
    remaining_strokes: int
    lot_recalled: bool
    registered_at_ms: int
    bound_at_ms: Optional[int]
    spent_at_ms: Optional[int]
    spent_reason: Optional[str]


class Interlock(TypedDict):
    code: str
    reason: str


class Depth(TypedDict):
    setpoint_um: int
    position_um: int
    ceiling_um: int
    moving: bool


class Rate(TypedDict):
    setpoint_mhz: int
    measured_mhz: int


class Telemetry(TypedDict):
    """One telemetry sample: ``GET /v1/telemetry`` events and the core of ``/v1/status``."""

    state: str  # Boot, Homing, Idle, Armed, Running, Paused, Fault, EStop
    faults: List[str]
    last_fault: Optional[str]
    interlocks: List[Interlock]
    homed: bool
    depth: Depth
    rate: Rate
    duty_permyriad: int
    motor_enabled: bool
    stroke_count: int
    current_ma: int
    temperature_mc: int
    supply_mv: int
    pedal: bool
    controller_time_us: int
    control: NotRequired[Dict[str, Any]]
    session: NotRequired[Any]


class Status(Telemetry):
    """``GET /v1/status``: telemetry plus the session, cartridge, storage and backend."""

    cartridge: Optional[CartridgeRecord]
    storage: Dict[str, Any]
    backend: str


class SimTruth(TypedDict, total=False):
    """``GET /v1/sim/truth``: the simulated rig's physics, the jig's instrument on the sim."""

    sim_time_us: int
    depth_um: float
    rate_hz: float
    strokes: int
    motor_powered: bool
    duty: float
    current_a: float
    temperature_c: float
    supply_v: float
    motor_off_at_us: Optional[int]
    cartridge_seated: bool
    ticks: int
