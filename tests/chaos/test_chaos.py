"""Short chaos run (``pytest -m chaos``; also part of plain ``tox``): 150 jobs through two hubs on
one redis-server while 25 faults are injected (workers kill -9'd and dropped, a hub kill -9'd and
restarted, redis-server restarted); every invariant of ``tests/chaos/driver.py`` must hold.
The long run: ``tox -e chaos`` or ``python -m tests.chaos.driver --faults 200 --jobs 2000``."""

from __future__ import annotations

import asyncio

import pytest

from .driver import Config, run

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(110)
def test_chaos_short(tmp_path):
    report = asyncio.run(run(Config(jobs=150, faults=25, seed=11, gap=0.5, settle_max=30, out=tmp_path)))
    print("\n" + report.table())
    assert sum(report.faults.values()) >= 20, report.faults
    # D18: every submission left in doubt by a fault was sent again with its idempotency key
    assert report.accepted == 150 and report.in_doubt == 0, report.table()
    assert report.lost == 0 and report.duplicated == 0 and report.stuck == 0, report.table()
    assert not report.violations, report.table()
