"""pytest fixtures for a needled on the simulated rig (installed as a pytest plugin).

- ``needled_sim``: a fresh :class:`~needlepen.sim.SimNeedled` per test (its own data
  directory and port), stopped afterwards;
- ``operator`` / ``technician``: clients of it with that role's token.

The binary is found as :func:`~needlepen.sim.find_binary` says (``$NEEDLED_BIN`` or the
newest ``target/{release,debug}/needled`` above the working directory).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .client import Needled
from .sim import SimNeedled


@pytest.fixture
def needled_sim(tmp_path) -> Iterator[SimNeedled]:
    """A needled on the sim backend, ready (``/v1/health`` ok), in ``tmp_path``."""
    data = tmp_path / "needled"
    data.mkdir()
    with SimNeedled(data_dir=data) as n:
        yield n


@pytest.fixture
def operator(needled_sim: SimNeedled) -> Needled:
    """A client with the operator token."""
    return needled_sim.operator()


@pytest.fixture
def technician(needled_sim: SimNeedled) -> Needled:
    """A client with the technician token."""
    return needled_sim.technician()
