"""A jig check as a pytest test, on needlepen's fixtures: a fresh needled on the simulated rig
per test (``needled_sim``), clients for each role (``operator``, ``technician``).

    pip install ./clients/python pytest
    cargo build -p needled && pytest examples/jig/test_jig_example.py

The depth is judged by the jig's instrument (on the sim, the rig's physical truth), never by
the controller's own telemetry.
"""

import pytest

from needlepen import ApiError, CreateSession, ErrorCode, Setpoints

TOLERANCE_UM = 20.0


def jig_depth_um(technician):
    return float(technician.sim_truth()["depth_um"])


@pytest.fixture
def armed_session(operator, technician):
    """A session on the face (ceiling 1500 um here), armed at 1000 um, ended afterwards."""
    operator.home_and_wait()
    technician.sim_inject("seat_new_cartridge")
    checklist = {item: True for item in operator.checklist_ids()}
    session = operator.create_session(CreateSession("jig-pytest", "S-JIG-1", "face", checklist))
    operator.bind_cartridge(session["id"])
    operator.arm(session["id"], Setpoints.hz(1000, 120))
    operator.wait_for(lambda s: s["state"] == "Armed" and not s["depth"]["moving"], "armed and settled")
    yield session["id"]
    operator.end(session["id"], "jig pytest finished")


def test_armed_depth_is_where_the_jig_measures_it(armed_session, technician):
    assert abs(jig_depth_um(technician) - 1000) <= TOLERANCE_UM


def test_depth_above_the_area_ceiling_is_refused_and_the_needle_stays(armed_session, operator, technician):
    before = jig_depth_um(technician)
    with pytest.raises(ApiError) as refused:
        operator.set_setpoints(armed_session, Setpoints(depth_um=2400))
    assert (refused.value.status, refused.value.code) == (400, ErrorCode.DEPTH_ABOVE_AREA_CEILING)
    technician.wait_rig_time(50_000)  # 50 ms of rig time: a move would have started
    assert abs(jig_depth_um(technician) - before) <= 1.0
