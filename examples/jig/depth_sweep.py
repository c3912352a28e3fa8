#!/usr/bin/env python3
"""Depth sweep and stroke-rate check for a bench jig, as an OpenHTF test.

The pen is driven through needled's API (needlepen's NeedledPlug); it is judged by the jig's
own instruments (SimJigPlug: on the simulated rig, the simulation's physical truth, never the
controller's telemetry; on a bench, replace that plug with your gauge and tachometer). Every
depth point and the stroke rate are OpenHTF measurements with units and limits; OpenHTF's
JSON record goes to --json, and a CSV of the sweep to --out.

    pip install './clients/python[openhtf]'
    python examples/jig/depth_sweep.py --url http://127.0.0.1:7878 \\
        --token-file data/tokens.json --sim-new-cartridge --json sweep.json --out sweep.csv

Phases:
  1. prepare: home the depth axis, seat a cartridge (sim), open a session (every checklist
     item confirmed: a jig, not a treatment), bind the cartridge, arm at the first depth;
  2. depth_sweep: from --from-um to --to-um in --step-um steps going deeper, then back going
     shallower; after each move wait until the controller reports the axis stopped (only to
     know when to look), then until the jig's reading is steady; each point must be within
     --tolerance-um of its setpoint;
  3. stroke_rate: start the needles at --rate-hz, let the ramp pass (--rate-settle-ms of rig
     time), count the rig's strokes over --rate-window-ms of rig time; within --rate-tol-pct;
  4. finish: pause and end the session (the single-use cartridge is spent).

Exit status: 0 PASS, 1 FAIL (a measurement outside its limits), 2 ERROR or ABORTED.
"""

import argparse
import csv
import sys

import openhtf as htf
from openhtf.core.test_record import Outcome
from openhtf.output.callbacks import json_factory
from openhtf.util import units

from needlepen import token_from_file
from needlepen.htf import NeedledPlug, SimJigPlug, configure

CSV_HEADER = ["index", "direction", "setpoint_um", "measured_um", "error_um", "within_tolerance", "jig_time_us"]


def sweep_points(start_um, stop_um, step_um):
    """The sweep's (direction, setpoint) pairs: deeper, then back shallower."""
    up = list(range(start_um, stop_um + 1, step_um))
    down = list(reversed(up))[1:]
    return [("up", d) for d in up] + [("down", d) for d in down]


def point_name(index, direction, setpoint_um):
    return f"depth_{index:03d}_{direction}_{setpoint_um}um"


def build_test(args):
    points = sweep_points(args.from_um, args.to_um, args.step_um)
    tol = args.tolerance_um
    depth_points = [
        htf.Measurement(point_name(i, d, sp))
        .with_units(units.MICROMETRE_MICRON)
        .in_range(sp - tol, sp + tol)
        .doc(f"needle depth by the jig at setpoint {sp} um, reached going {d}")
        for i, (d, sp) in enumerate(points)
    ]
    worst = (
        htf.Measurement("depth_max_abs_error_um")
        .with_units(units.MICROMETRE_MICRON)
        .in_range(maximum=tol)
        .doc("largest |measured - setpoint| of the sweep")
    )
    lo, hi = args.rate_hz * (1 - args.rate_tol_pct / 100), args.rate_hz * (1 + args.rate_tol_pct / 100)
    rate = (
        htf.Measurement("stroke_rate_hz")
        .with_units(units.HERTZ)
        .in_range(lo, hi)
        .doc(f"strokes counted by the jig over {args.rate_window_ms} ms of rig time, at setpoint {args.rate_hz} Hz")
    )

    @htf.plug(pen=NeedledPlug, jig=SimJigPlug)
    def prepare(test, pen, jig):
        test.attach("needled_version.json", jig.api.raw("GET", "/v1/version"), "application/json")
        pen.home()
        if args.sim_seat_tag:
            seat = {"tag_hex": args.sim_seat_tag}
            if args.sim_chip_secret:
                seat["chip_secret_hex"] = args.sim_chip_secret
            jig.api.sim_inject("seat_cartridge", **seat)
        elif args.sim_new_cartridge:
            jig.seat_new_cartridge()
        session = pen.open_session(args.area, operator="jig-script")
        test.logger.info("session %s bound cartridge %s", session["id"], session["cartridge_id"])
        pen.arm(points[0][1], args.rate_hz)

    @htf.plug(pen=NeedledPlug, jig=SimJigPlug)
    @htf.measures(*depth_points, worst)
    def depth_sweep(test, pen, jig):
        rows = []
        try:
            for i, (direction, setpoint) in enumerate(points):
                if i > 0:
                    pen.set_depth(setpoint)
                measured = jig.settled_depth_um(pen, agree_um=tol / 10)
                _, at_us = jig.depth_um()
                error = measured - setpoint
                test.measurements[point_name(i, direction, setpoint)] = round(measured, 2)
                rows.append([i, direction, setpoint, f"{measured:.2f}", f"{error:.2f}",
                             "true" if abs(error) <= tol else "false", at_us])
                print(f"{i:3d} {direction:4s} {setpoint:5d} um -> {measured:8.2f} um ({error:+6.2f})", flush=True)
            test.measurements.depth_max_abs_error_um = round(max(abs(float(r[4])) for r in rows), 2)
        finally:
            if args.out:
                with open(args.out, "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(CSV_HEADER)
                    w.writerows(rows)

    @htf.plug(pen=NeedledPlug, jig=SimJigPlug)
    @htf.measures(rate)
    def stroke_rate(test, pen, jig):
        pen.start()
        try:
            jig.wait_rig_time(args.rate_settle_ms * 1000)
            test.measurements.stroke_rate_hz = round(jig.rate_hz_over(args.rate_window_ms * 1000), 2)
        finally:
            pen.pause()

    @htf.plug(pen=NeedledPlug)
    def finish(test, pen):
        pen.end("jig depth sweep finished")

    phases = [prepare, depth_sweep] + ([] if args.skip_rate else [stroke_rate]) + [finish]
    return htf.Test(
        *phases,
        test_name="needle_depth_sweep",
        test_description="needle depth sweep both ways and stroke rate, judged by the jig",
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7878", help="needled's address")
    p.add_argument("--token", help="bearer token (technician: the sim's jig endpoints need one)")
    p.add_argument("--token-file", help="needled's generated tokens.json; its technician token is used")
    p.add_argument("--json", help="write OpenHTF's JSON test record here")
    p.add_argument("--out", help="write the sweep as CSV here")
    p.add_argument("--dut-id", default="sim-pen", help="the device under test's id in the record")
    p.add_argument("--area", default="body", help="treatment area (its ceiling must reach --to-um)")
    p.add_argument("--from-um", type=int, default=250)
    p.add_argument("--to-um", type=int, default=2500)
    p.add_argument("--step-um", type=int, default=50)
    p.add_argument("--tolerance-um", type=float, default=20.0, help="largest |error| that passes")
    p.add_argument("--rate-hz", type=float, default=80.0, help="stroke rate to arm and run with")
    p.add_argument("--rate-tol-pct", type=float, default=5.0, help="allowed stroke-rate error, percent")
    p.add_argument("--rate-settle-ms", type=int, default=1000, help="rig time for the soft start before counting")
    p.add_argument("--rate-window-ms", type=int, default=1000, help="rig time the strokes are counted over")
    p.add_argument("--skip-rate", action="store_true", help="sweep the depth only (the needles never run)")
    seat = p.add_mutually_exclusive_group()
    seat.add_argument("--sim-seat-tag", metavar="HEX", help="sim only: seat a cartridge with this tag image first")
    p.add_argument("--sim-chip-secret", metavar="HEX", help="sim only: the private key of --sim-seat-tag's chip (needle-factory provision)")
    seat.add_argument("--sim-new-cartridge", action="store_true", help="sim only: seat a fresh cartridge the service signs")
    args = p.parse_args(argv)

    token = args.token
    if token is None and args.token_file:
        token = token_from_file(args.token_file, "technician")
    if not token:
        p.error("give --token or --token-file")
    if args.step_um <= 0 or args.from_um > args.to_um:
        p.error("need --from-um <= --to-um and --step-um > 0")
    configure(args.url, token)

    test = build_test(args)
    if args.json:
        test.add_output_callbacks(json_factory.OutputToJSON(args.json, indent=2))
    outcome = {}
    test.add_output_callbacks(lambda record: outcome.update(value=record.outcome))
    test.execute(test_start=lambda: args.dut_id)
    result = outcome.get("value")
    print(f"depth_sweep: {result.name if result else 'no record'}", flush=True)
    if result == Outcome.PASS:
        return 0
    return 1 if result == Outcome.FAIL else 2


if __name__ == "__main__":
    sys.exit(main())
