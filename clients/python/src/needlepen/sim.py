"""A needled on the simulated rig as a child process, for jig scripts and tests.

The binary is ``$NEEDLED_BIN``, else the newer of ``target/release/needled`` and
``target/debug/needled`` in the repository above the current directory (build it first:
``cargo build --release -p needled``). It binds port 0 on loopback with a fresh data
directory; the address and scheme come from the file ``needled --ready-file`` writes once it
listens, and it counts as ready once ``GET /v1/health`` answers ``ok`` (never a log sentence).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import json
import tempfile
import time
from pathlib import Path
from typing import Optional

from .client import Needled, token_from_file
from .errors import NeedledError

#: The test configuration: the product's defaults, with a tick-gap margin and a 5 s service
#: stall limit for a loaded machine (a jig run once homed into a stall stop beside a build).
CI_CONFIG = "[control]\nmax_tick_gap_ms = 500\nservice_stall_ms = 5000\n"


def find_binary(name: str = "needled", start: Optional[Path] = None) -> Path:
    """``$NEEDLED_BIN`` (for ``needled``), else the newest ``target/{release,debug}/<name>``
    in ``start`` (default: the current directory) or a directory above it."""
    env = os.environ.get("NEEDLED_BIN") if name == "needled" else None
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for d in [here, *here.parents]:
        found = [p for p in (d / "target" / "release" / name, d / "target" / "debug" / name) if p.is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    raise FileNotFoundError(f"no target/release/{name} or target/debug/{name} above {here}; build it or set NEEDLED_BIN")


class SimNeedled:
    """A running needled on the sim backend; a context manager that stops it on exit.

    ``url``, ``data_dir``, ``operator_token``, ``technician_token``, and clients for each role
    (:meth:`operator`, :meth:`technician`).
    """

    def __init__(
        self,
        binary: Optional[Path] = None,
        config: str = CI_CONFIG,
        data_dir: Optional[Path] = None,
        ready_timeout_s: float = 60.0,
    ):
        self.binary = Path(binary) if binary else find_binary()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="needlepen-"))
        self.config_file = self.data_dir / "test.toml"
        if not self.config_file.exists():
            self.config_file.write_text(config, encoding="utf-8")
        self.log_file = self.data_dir / "needled.log"
        self.ready_timeout_s = ready_timeout_s
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""

    def start(self) -> "SimNeedled":
        ready = self.data_dir / "ready.json"
        if ready.exists():
            ready.unlink()
        log = open(self.log_file, "wb")
        # Ready when needled has written --ready-file (its bound address, atomically, once it
        # listens) and /v1/health answers ok: never a log sentence.
        self.proc = subprocess.Popen(
            [str(self.binary), "--config", str(self.config_file), "--bind", "127.0.0.1:0",
             "--data-dir", str(self.data_dir), "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while not ready.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise NeedledError(f"needled wrote no ready file within {self.ready_timeout_s} s")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.url = f"{info['scheme']}://{info['address']}"
        health = Needled(self.url, timeout_s=2.0)
        while True:
            self._check_alive()
            try:
                if health.health().get("status") == "ok":
                    break
            except NeedledError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise NeedledError(f"needled at {self.url} not healthy within {self.ready_timeout_s} s")
            time.sleep(0.05)
        self.operator_token = token_from_file(str(self.data_dir / "tokens.json"), "operator")
        self.technician_token = token_from_file(str(self.data_dir / "tokens.json"), "technician")
        return self

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise NeedledError(f"needled exited with {self.proc.returncode}:\n{tail}")

    def operator(self) -> Needled:
        """A client with the operator token."""
        return Needled(self.url, self.operator_token)

    def technician(self) -> Needled:
        """A client with the technician token (the sim's controls need one)."""
        return Needled(self.url, self.technician_token)

    def stop(self) -> None:
        """Stops needled (SIGTERM, then SIGKILL after 10 s) and removes its own data dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "SimNeedled":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
