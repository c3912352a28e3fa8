"""The client, the fixtures and the SSE reader against a real needled on the sim."""

import itertools

import pytest

from needlepen import ApiError, CreateSession, ErrorCode, Needled, Setpoints

REQUIRED = [
    "no_active_acne",
    "no_eczema",
    "no_rosacea",
    "no_keloid_history",
    "no_sunburn_or_tan",
    "no_recent_actives",
    "consent",
]


def test_fixture_serves_a_healthy_sim_and_stops_it(needled_sim, operator):
    assert operator.health()["status"] == "ok"
    status = operator.status()
    assert status["backend"] == "sim"
    assert status["state"] in ("Boot", "Idle")
    assert operator.version()["backend"] == "sim"
    proc = needled_sim.proc
    needled_sim.stop()
    assert proc.poll() is not None


def test_checklist_ids_are_the_configured_ones(operator):
    assert operator.checklist_ids(required_only=True) == REQUIRED
    assert "numbing" in operator.checklist_ids()


def test_refusals_carry_status_and_stable_code(needled_sim, operator):
    with pytest.raises(ApiError) as e:
        operator.session(999999)
    assert (e.value.status, e.value.code) == (404, ErrorCode.NOT_FOUND)
    with pytest.raises(ApiError) as e:
        Needled(needled_sim.url, "not-a-token").status()
    assert (e.value.status, e.value.code) == (401, ErrorCode.UNAUTHORIZED)
    with pytest.raises(ApiError) as e:
        operator.sim_inject("pedal", pressed=True)
    assert (e.value.status, e.value.code) == (403, ErrorCode.FORBIDDEN)
    with pytest.raises(ApiError) as e:
        operator.create_session(CreateSession("dr-py", "S-PY-0", "nowhere"))
    assert (e.value.status, e.value.code) == (400, ErrorCode.UNKNOWN_AREA)


def test_telemetry_stream_yields_samples_in_controller_time(operator):
    samples = list(itertools.islice(operator.telemetry(), 3))
    times = [s["controller_time_us"] for s in samples]
    assert times == sorted(times) and times[0] < times[-1], times
    assert {"state", "depth", "rate", "faults"} <= set(samples[0])


def test_a_session_completed_late_arms_runs_and_reports(operator, technician):
    operator.home_and_wait()
    technician.sim_inject("seat_new_cartridge", id="C-PY-1")
    partial = {i: True for i in REQUIRED if i != "consent"}
    s = operator.create_session(CreateSession("dr-py", "S-PY-1", "face", partial))
    operator.bind_cartridge(s["id"])
    with pytest.raises(ApiError) as e:
        operator.arm(s["id"], Setpoints.hz(800, 120))
    assert (e.value.status, e.value.code) == (409, ErrorCode.CHECKLIST_INCOMPLETE)
    s = operator.confirm_checklist(s["id"], {"consent": True})
    assert all(a["confirmed"] for a in s["checklist"] if a["item"] in REQUIRED)
    assert operator.arm(s["id"], Setpoints.hz(800, 120))["state"] == "armed"
    operator.wait_for(lambda st: st["state"] == "Armed" and not st["depth"]["moving"], "armed and settled")
    assert operator.start(s["id"])["state"] == "running"
    operator.wait_for(lambda st: st["rate"]["measured_mhz"] > 100_000, "the stroke rate")
    ended = operator.end(s["id"], "python kit test")
    assert ended["state"] == "ended"
    assert operator.cartridge("C-PY-1")["state"] == "spent"
    csv = operator.report_csv(s["id"]).splitlines()
    header = "at_ms,kind,depth_um,rate_mhz,actor,reason,plan_id,plan_session,plan_sessions"
    assert csv[0] == header + ",next_window_opens_at_ms,next_window_closes_at_ms"
    assert csv[-1].startswith(",post_care,")
    # Outside a plan, every row ends in the plan context's five empty cells.
    assert all(row.endswith(",,,,,") for row in csv[1:]), csv
    assert "post_care" in operator.report(s["id"])
