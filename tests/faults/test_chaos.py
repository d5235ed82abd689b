"""A minute of chaos: kills and restarts, frozen nodes, etcd away and a full
mailbox, under steady traffic; every promise checked at the end (see
``tests/chaos.py``). A failure prints its seed: replay it with
``TASKMESH_CHAOS_SEED=<seed>``."""

from __future__ import annotations

import pytest

from tests.chaos import Chaos, seed_from_environment

pytestmark = pytest.mark.integration


def test_a_seeded_minute_of_faults_loses_no_ask_applies_no_key_twice_and_accounts_for_every_tell() -> (
    None
):
    seed = seed_from_environment()
    report = Chaos(seed, seconds=40.0).run()
    assert report.faults, f"seed {seed}: no fault was injected"
    assert report.answered > 100 and report.arrived > 100, report.summary()
    assert report.problems() == [], f"{report.summary()}; replay with TASKMESH_CHAOS_SEED={seed}"
