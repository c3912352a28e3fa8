#!/usr/bin/env python3
"""Writes docs/soup.md (IEC 62304 SOUP list) from `cargo metadata`.

Every third-party crate in the build: name, version, license, purpose (for the crates we
chose; "transitive" for what they bring), and which of our crates use it.
`scripts/soup.py --check` fails if docs/soup.md is not what the current Cargo.lock gives.
"""
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "soup.md"

# Why we chose each direct dependency. A new direct dependency without a line here fails
# the check, so every SOUP item we chose has a stated purpose.
PURPOSE = {
    "embedded-hal": "hardware traits the core is written against",
    "serde": "serialization derives of protocol and config types",
    "serde_json": "JSON of the HTTP API, events and reports",
    "postcard": "compact encoding of protocol types for a serial link",
    "crc": "CRC-32C of link frames and the link's configuration hash",
    "heapless": "fixed-capacity queues of the no_std link",
    "proptest": "property tests (test only)",
    "embedded-hal-mock": "pin-level mocks (test only)",
    "toml": "configuration file parsing",
    "toml_edit": "line of a configuration key, from the document's spans",
    "serde_path_to_error": "dotted key of a configuration value refused while deserializing",
    "seqlock": "the control thread publishes its snapshot without waiting for a reader (no priority inversion)",
    "thiserror": "error types with stable codes",
    "tokio": "async runtime of the host service",
    "axum": "HTTP server of the API and console",
    "axum-server": "HTTPS listener of the API off loopback (rustls)",
    "rustls": "TLS of the API (server) and of needlectl and tests (pinned fingerprint or CA), on ring",
    "rcgen": "self-signed TLS certificate made on first start",
    "tower-http": "HTTP middleware (body limits, tracing)",
    "tracing": "structured logging",
    "tracing-subscriber": "log output, human or JSON",
    "rusqlite": "SQLite ledger (bundled SQLite)",
    "clap": "command-line parsing of needled and needlectl",
    "comfy-table": "text tables of needlectl's human output",
    "p256": "ECDSA P-256: factory signatures on cartridge tags and the cartridge chip's challenge answer (docs/cartridge-security.md)",
    "sha2": "SHA-256: the cartridge chip's challenge digest, the test factory key, config hashes, stored token hashes, certificate fingerprints",
    "hex": "hex text form of tags and tokens",
    "jiff": "civil calendar of cartridge expiry dates",
    "rand": "token generation and the chip challenge nonces",
    "futures": "stream helpers for SSE",
    "tokio-stream": "stream adapters for SSE",
    "libc": "OS constants for the hardware backends",
    "nix": "clock_nanosleep/clock_gettime for the control thread",
    "thread-priority": "SCHED_FIFO priority of the control thread",
    "sd-notify": "systemd readiness and watchdog",
    "ureq": "HTTP(S) client of needlectl, tests and jigs",
    "utoipa": "OpenAPI 3.1 document from the API contract's types and routes (needle-api, needled)",
    "rppal": "Raspberry Pi GPIO/PWM/I2C backend (feature rppal)",
    "linux-embedded-hal": "Linux gpio-cdev/i2cdev backend (feature linux)",
    "gpio-cdev": "GPIO line events with kernel timestamps (feature linux)",
    "tempfile": "temporary directories (test only)",
    "fantoccini": "WebDriver client for browser tests (test only)",
    "hyper-util": "HTTP connector for the WebDriver client (test only)",
    "needled": "the host service (used by hil-tests)",
}


def metadata():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def render(meta):
    packages = {p["id"]: p for p in meta["packages"]}
    members = set(meta["workspace_members"])
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    # Which workspace members reach each package, and which members depend on it directly.
    users = defaultdict(set)
    direct = defaultdict(set)
    for member in members:
        name = packages[member]["name"]
        for dep in nodes[member]["deps"]:
            direct[dep["pkg"]].add(name)
        stack, seen = [member], set()
        while stack:
            for dep in nodes[stack.pop()]["deps"]:
                if dep["pkg"] not in seen:
                    seen.add(dep["pkg"])
                    stack.append(dep["pkg"])
        for pkg in seen:
            users[pkg].add(name)
    rows, missing = [], []
    for pid, pkg in sorted(packages.items(), key=lambda kv: (kv[1]["name"], kv[1]["version"])):
        if pid in members or pid not in users:
            continue
        name = pkg["name"]
        if pid in direct:
            purpose = PURPOSE.get(name)
            if purpose is None:
                missing.append(name)
                purpose = "?"
        else:
            purpose = "transitive"
        where = ", ".join(sorted(users[pid]))
        rows.append(f"| {name} | {pkg['version']} | {pkg.get('license') or 'unknown'} | {purpose} | {where} |")
    header = [
        "# SOUP: software of unknown provenance",
        "",
        "Every third-party crate in the build (IEC 62304 SOUP list), generated by",
        "`python3 scripts/soup.py` from `cargo metadata --locked --all-features`; CI runs",
        "`python3 scripts/soup.py --check` so this file always matches `Cargo.lock`.",
        "needle-core, the safety-critical core, uses only embedded-hal and serde (no_std).",
        "",
        f"{len(rows)} crates.",
        "",
        "| crate | version | license | purpose | used by |",
        "| --- | --- | --- | --- | --- |",
    ]
    return "\n".join(header + rows) + "\n", missing


def main():
    text, missing = render(metadata())
    if missing:
        print(f"soup: direct dependencies without a stated purpose in scripts/soup.py: {missing}", file=sys.stderr)
        sys.exit(1)
    if "--check" in sys.argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print("soup: docs/soup.md is out of date with Cargo.lock: run python3 scripts/soup.py", file=sys.stderr)
            sys.exit(1)
        print("soup: docs/soup.md matches Cargo.lock")
        return
    OUT.write_text(text)
    print(f"soup: wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
