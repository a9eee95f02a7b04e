"""bench.instructions --aiload's arithmetic, on made-up counts (no valgrind): the idle windows'
rate per second is subtracted from each job window in proportion to its length, the rest divided
by its jobs; per update is the difference per job over the steps; a window whose jobs did not all
complete, or a subtraction that leaves nothing, refuses the figure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.instructions_ai import AiShape, FigureRefused, Window, ai_figures  # noqa: E402

IDLE = {"hub": 1_000_000, "redis": 50_000}  # instructions per second, connected and idle
JOB = {"hub": 2_000_000, "redis": 400_000}  # per job without updates
UPDATE = {"hub": 300_000, "redis": 20_000}  # per progress update


def window(kind: str, seconds: float, jobs: int = 0, steps: int = 0, **kw: int) -> Window:
    counts = {n: round(IDLE[n] * seconds + jobs * (JOB[n] + steps * UPDATE[n])) + kw.get(n, 0) for n in IDLE}
    return Window(kind, counts, dict.fromkeys(IDLE, seconds), steps, jobs, kw.get("completed", jobs))


def test_the_idle_rate_is_subtracted_by_each_window_length():
    windows = [
        window("warm-up", 0, 5, 20),
        window("idle", 40.2),
        window("updates", 41.0, 25, 20),  # a window may run a little longer: its own length counts
        window("plain", 40.1, 25, 0),
        window("idle", 39.9),
    ]
    windows[0].counts = windows[0].seconds = {}  # the warm-up is not counted, only checked
    fig = ai_figures(windows)
    assert fig["idle_per_s"] == IDLE
    assert fig["idle_per_s_by_window"] == [IDLE, IDLE]
    assert fig["per_job"] == {n: JOB[n] + 20 * UPDATE[n] for n in IDLE}
    assert fig["per_job_plain"] == JOB
    assert fig["per_update"] == UPDATE
    assert fig["jobs"] == {"updates": 25, "plain": 25} and fig["steps"] == 20
    # what was subtracted, as a share of the window's count
    assert fig["fixed_share"]["plain"]["hub"] == pytest.approx(40.1e6 / (40.1e6 + 25 * 2e6), abs=1e-3)


def test_two_idle_windows_that_differ_are_averaged_and_both_shown():
    windows = [window("idle", 40, hub=4_000_000), window("updates", 40, 25, 20), window("plain", 40, 25)]
    windows.append(window("idle", 40, hub=-4_000_000))
    fig = ai_figures(windows)
    assert [w["hub"] for w in fig["idle_per_s_by_window"]] == [1_100_000, 900_000]
    assert fig["idle_per_s"]["hub"] == 1_000_000
    assert fig["per_update"] == UPDATE


def test_a_window_with_a_job_not_completed_refuses_the_figure():
    windows = [window("idle", 40), window("updates", 40, 25, 20, completed=24), window("plain", 40, 25)]
    with pytest.raises(FigureRefused, match="updates window: 24 of 25 jobs completed"):
        ai_figures(windows)
    windows = [window("warm-up", 0, 5, 20, completed=3), window("idle", 40)]
    with pytest.raises(FigureRefused, match="warm-up window: 3 of 5"):
        ai_figures(windows)


def test_a_subtraction_that_leaves_nothing_refuses_the_figure():
    # the idle windows cost more per second than the job window: nothing left per job
    windows = [window("idle", 40, hub=200_000_000), window("updates", 40, 25, 20), window("plain", 40, 25)]
    with pytest.raises(FigureRefused, match="updates window: the idle windows' rate"):
        ai_figures(windows)
    # jobs with updates that cost less than jobs without: no figure per update
    windows = [window("idle", 40), window("updates", 40, 25, 20, hub=-160_000_000), window("plain", 40, 25)]
    with pytest.raises(FigureRefused, match="an update costs nothing"):
        ai_figures(windows)


def test_every_kind_of_window_is_needed():
    with pytest.raises(FigureRefused, match="need an idle"):
        ai_figures([window("updates", 40, 25, 20), window("plain", 40, 25)])
    with pytest.raises(FigureRefused, match="need an idle"):
        ai_figures([window("idle", 40), window("updates", 40, 25, 20)])


def test_a_window_too_short_for_its_jobs_is_refused_before_running():
    AiShape().check()  # the defaults fit: 25 jobs at 1/s of up to 3 s in 40 s
    with pytest.raises(ValueError, match="at least 33 s"):
        AiShape(jobs=25, rate=1.0, window_s=30).check()
