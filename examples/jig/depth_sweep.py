#!/usr/bin/env python3
"""Depth sweep for a bench jig: the needle pen driven through needled's HTTP API, judged by the
jig's own depth instrument, every point written to a CSV.

Python 3.8+ standard library only. Start from this for your own jig scripts.

    python3 examples/jig/depth_sweep.py --url http://127.0.0.1:7878 \\
        --token-file data/tokens.json --out sweep.csv

What it does:
  1. authenticates with a bearer token (technician: the sim's jig endpoints need one);
  2. homes the depth axis, opens a session (every checklist item confirmed), binds the seated
     cartridge and arms at the first depth;
  3. sweeps the depth from --from-um to --to-um in --step-um steps going deeper, then back
     going shallower; after each move it waits until the controller reports the axis stopped
     (only to know when to look), then until the JIG's reading is steady;
  4. writes one CSV row per point: setpoint, measured (by the jig), error;
  5. ends the session (the single-use cartridge is spent) and exits 1 if any point is outside
     --tolerance-um, 2 on any error.

The jig's instrument is `read_jig_depth_um` below. On the simulated rig it reads the
simulation's physical truth (GET /v1/sim/truth), never the controller's own telemetry. On a
real bench, replace it with your gauge (serial dial indicator, ADC on an LVDT, ...).
"""

import argparse
import csv
import json
import sys
import time
import urllib.error
import urllib.request

# The checklist of needled's default configuration, used if the service cannot list its own.
DEFAULT_CHECKLIST = [
    "no_active_acne",
    "no_eczema",
    "no_rosacea",
    "no_keloid_history",
    "no_sunburn_or_tan",
    "no_recent_actives",
    "consent",
    "numbing",
]

CSV_HEADER = ["index", "direction", "setpoint_um", "measured_um", "error_um", "within_tolerance", "jig_time_us"]


class ApiError(Exception):
    """needled refused a request: {"error": {"code", "message"}}."""

    def __init__(self, method, path, status, code, message):
        super().__init__(f"{method} {path}: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


class Needled:
    """A minimal client of needled's HTTP API."""

    def __init__(self, url, token, timeout_s=10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                err = json.loads(text)["error"]
                raise ApiError(method, path, e.code, err.get("code", ""), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(method, path, e.code, "", text) from None
        return json.loads(text) if text else None

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None):
        return self.call("POST", path, body)

    def put(self, path, body):
        return self.call("PUT", path, body)


def read_jig_depth_um(api):
    """The jig's depth measurement: (depth in um, jig time in us).

    Sim: the simulation's physical truth. Replace this on a real bench with your instrument.
    """
    truth = api.get("/v1/sim/truth")
    return float(truth["depth_um"]), int(truth["sim_time_us"])


def wait_status(api, what, done, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        status = api.get("/v1/status")
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}; last status state={status.get('state')}")
        time.sleep(0.005)


def settled_depth(api, agree_um, timeout_s=10.0):
    """Waits for the axis to stop, then for two jig readings >= 20 ms apart to agree."""
    wait_status(api, "the depth axis to stop", lambda s: s["depth"]["moving"] is False, timeout_s)
    deadline = time.monotonic() + timeout_s
    a_um, a_us = read_jig_depth_um(api)
    while True:
        time.sleep(0.005)
        b_um, b_us = read_jig_depth_um(api)
        if b_us - a_us >= 20_000:
            if abs(b_um - a_um) <= agree_um:
                return b_um, b_us
            a_um, a_us = b_um, b_us
        if time.monotonic() > deadline:
            raise TimeoutError("the jig's depth reading did not settle")


def checklist_answers(api, given):
    if given:
        ids = [c.strip() for c in given.split(",") if c.strip()]
    else:
        try:
            ids = [item["id"] for item in api.get("/v1/console/config")["checklist"]]
        except (ApiError, KeyError, TypeError):
            ids = DEFAULT_CHECKLIST
    return {item: True for item in ids}


def sweep_points(start_um, stop_um, step_um):
    up = list(range(start_um, stop_um + 1, step_um))
    down = list(reversed(up))[1:]
    return [("up", d) for d in up] + [("down", d) for d in down]


def set_depth(api, session, depth_um, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api.put(f"/v1/sessions/{session}/setpoints", {"depth_um": depth_um})
            return
        except ApiError as e:
            if e.code != "depth_not_settled" or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7878", help="needled's address")
    p.add_argument("--token", help="bearer token (technician for the sim's jig endpoints)")
    p.add_argument("--token-file", help="needled's generated tokens.json; the technician token is used")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--area", default="body", help="treatment area (its ceiling must reach --to-um)")
    p.add_argument("--from-um", type=int, default=250)
    p.add_argument("--to-um", type=int, default=2500)
    p.add_argument("--step-um", type=int, default=50)
    p.add_argument("--rate-hz", type=int, default=80, help="stroke rate to arm with (the needles do not run)")
    p.add_argument("--tolerance-um", type=float, default=20.0, help="largest |error| that passes")
    p.add_argument("--checklist", help="comma-separated checklist ids to confirm (default: the service's list)")
    p.add_argument("--sim-seat-tag", metavar="HEX", help="sim only: seat a cartridge with this tag image first")
    p.add_argument("--sim-chip-secret", metavar="HEX", help="sim only: the seated cartridge chip's private key (needle-factory provision)")
    args = p.parse_args(argv)

    token = args.token
    if token is None and args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = next(t["token"] for t in json.load(f) if t["role"] == "technician")
    if not token:
        p.error("give --token or --token-file")
    if args.step_um <= 0 or args.from_um > args.to_um:
        p.error("need --from-um <= --to-um and --step-um > 0")

    api = Needled(args.url, token)
    points = sweep_points(args.from_um, args.to_um, args.step_um)
    session = None
    rows = []
    try:
        api.post("/v1/home")
        wait_status(api, "homing", lambda s: s["state"] == "Idle" and s["homed"] is True)
        if args.sim_seat_tag:
            seat = {"action": "seat_cartridge", "tag_hex": args.sim_seat_tag}
            if args.sim_chip_secret:
                seat["chip_secret_hex"] = args.sim_chip_secret
            api.post("/v1/sim/inject", seat)
        session = api.post("/v1/sessions", {
            "operator": "jig-script",
            "subject_ref": f"jig-sweep-{int(time.time() * 1000)}",
            "area": args.area,
            "checklist": checklist_answers(api, args.checklist),
        })["id"]
        api.post(f"/v1/sessions/{session}/cartridge")
        api.post(f"/v1/sessions/{session}/arm", {"depth_um": points[0][1], "rate_mhz": args.rate_hz * 1000})
        for index, (direction, setpoint) in enumerate(points):
            if index > 0:
                set_depth(api, session, setpoint)
            measured, at_us = settled_depth(api, args.tolerance_um / 10.0)
            error = measured - setpoint
            rows.append([index, direction, setpoint, f"{measured:.2f}", f"{error:.2f}",
                         "true" if abs(error) <= args.tolerance_um else "false", at_us])
            print(f"{index:3d} {direction:4s} {setpoint:5d} um -> {measured:8.2f} um ({error:+6.2f})", flush=True)
    except (ApiError, TimeoutError, urllib.error.URLError, KeyError) as e:
        print(f"depth_sweep: {e}", file=sys.stderr)
        return 2
    finally:
        if session is not None:
            try:
                api.post(f"/v1/sessions/{session}/end", {"reason": "jig depth sweep finished"})
            except (ApiError, urllib.error.URLError) as e:
                print(f"depth_sweep: could not end session {session}: {e}", file=sys.stderr)
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_HEADER)
            w.writerows(rows)

    outside = [r for r in rows if r[5] == "false"]
    worst = max((abs(float(r[4])) for r in rows), default=0.0)
    print(f"{len(rows)} points, worst |error| {worst:.2f} um, {len(outside)} outside +-{args.tolerance_um} um; CSV: {args.out}")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
