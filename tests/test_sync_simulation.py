"""The randomized multi-device simulation (tests/simulation.py) for a few seeds: three
devices, one server, random changes, frees and pins, crossing moves, case-only renames and NFD
names, syncs in random order, part of the run through the fault proxy; after quiescence
`tandem check` is clean everywhere, the trees are the same and nothing saved is lost.

Seeds: TANDEM_SIM_SEEDS="1,2,3" (default 1 to 8, about half a minute here); a failure names
its seed, which replays the run. bench/soak.py runs many more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.simulation import Simulation

SEEDS = [int(s) for s in os.environ.get("TANDEM_SIM_SEEDS", "1,2,3,4,5,6,7,8").split(",") if s.strip()]


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every seed (each seed has its own account)."""
    running = start_server(tmp_path_factory.mktemp("simulation") / "server")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.mark.parametrize("seed", SEEDS)
def test_three_devices_under_random_changes_and_faults_converge_and_lose_nothing(
        sim_server: RunningServer, tmp_path: object, seed: int) -> None:
    report = Simulation(sim_server.url, seed).run()
    print(f"simulation seed {seed}: {dict(report.operations)} faults {dict(report.faults)}")
