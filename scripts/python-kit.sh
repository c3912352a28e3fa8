#!/usr/bin/env bash
# The Python jig kit against the simulated rig: a venv under target/python-kit with
# clients/python (needlepen), OpenHTF and pytest; the package's tests, the pytest example and
# the OpenHTF depth sweep, whose JSON record must say PASS and hold every measurement with
# its units. Called by scripts/test.sh; needs python3 with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-kit
export PYTHONDONTWRITEBYTECODE=1
if [ ! -x "$venv/bin/python" ]; then
  # Debian splits venv (with its pip) into python3-venv.
  if ! python3 -m venv "$venv" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    rm -rf "$venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  [ -x "$venv/bin/python" ] || { echo "python-kit: cannot make a venv with python3" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check ./clients/python 'openhtf==1.6.3' 'pytest>=7'
"$venv/bin/python" -c 'import openhtf, needlepen.htf; print("openhtf", openhtf.__version__ if hasattr(openhtf, "__version__") else "1.6.3", "needlepen", needlepen.__version__)'

echo "== needled for the kit (debug build)"
# The same features as the nextest run of scripts/test.sh, so the build is shared.
cargo build -q --workspace --all-features --bin needled
export NEEDLED_BIN="$PWD/target/debug/needled"

echo "== clients/python tests and the pytest example"
"$venv/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests examples/jig/test_jig_example.py

echo "== examples/jig/depth_sweep.py (OpenHTF) against the sim"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$venv/bin/python" - "$out" <<'PY'
import json, subprocess, sys
from needlepen import SimNeedled

out = sys.argv[1]
with SimNeedled() as n:
    run = subprocess.run([sys.executable, "examples/jig/depth_sweep.py", "--url", n.url,
                          "--token", n.technician_token, "--sim-new-cartridge",
                          "--from-um", "250", "--to-um", "1500", "--step-um", "250",
                          "--rate-hz", "120", "--json", f"{out}/sweep.json", "--out", f"{out}/sweep.csv"])
    # The test ended its session: the pen is free and the cartridge was spent.
    api = n.operator()
    left_open = api.status()["session"]
    spent = [e for e in api.events(limit=1000) if e["kind"] == "cartridge_spent"]
record = json.load(open(f"{out}/sweep.json"))
measurements = {k: m for p in record["phases"] for k, m in p["measurements"].items()}
depth = [k for k in measurements if k.startswith("depth_") and k.endswith("um") and k != "depth_max_abs_error_um"]
problems = []
if run.returncode != 0:
    problems.append(f"depth_sweep.py exited {run.returncode}")
if left_open is not None or len(spent) != 1:
    problems.append(f"session left open ({left_open}) or {len(spent)} cartridges spent, expected 1")
if record["outcome"] != "PASS":
    problems.append(f"outcome {record['outcome']}")
if len(depth) != 11:
    problems.append(f"{len(depth)} depth points, expected 11 (250..1500 both ways)")
for name, unit in [("depth_max_abs_error_um", "µm"), ("stroke_rate_hz", "Hz")] + [(k, "µm") for k in depth]:
    m = measurements.get(name)
    if m is None:
        problems.append(f"measurement {name} missing")
    elif m["outcome"] != "PASS" or m["units"]["suffix"] != unit or not m["validators"]:
        problems.append(f"{name}: {m['outcome']} {m['units']} {m['validators']}")
if problems:
    sys.exit("depth sweep record: " + "; ".join(problems))
print(f"depth sweep: PASS, {len(depth)} depth points within limits, stroke rate "
      f"{measurements['stroke_rate_hz']['measured_value']} Hz")
PY
echo "== python kit passed"
