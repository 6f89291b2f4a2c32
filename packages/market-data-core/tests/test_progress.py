"""What the command lines say of finite work: percent, rows, rate, ETA and elapsed."""

import pytest

from market_data_core.progress import Snapshot, duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.04, "0.0 s"), (1.74, "1.7 s"), (59.94, "59.9 s"), (61, "0:01:01"), (3725.4, "1:02:05")],
)
def test_durations_read_as_seconds_then_clock_time(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_a_known_total_gives_percent_and_eta_while_running() -> None:
    running = Snapshot(rows=105_000, fraction=0.45, elapsed=2.0)
    assert running.parts() == [
        "45%", "105,000 rows", "52,500 rows/s", "ETA 2.4 s", "elapsed 2.0 s"
    ]  # fmt: skip
    assert running.parts(final=True) == ["45%", "105,000 rows", "52,500 rows/s", "elapsed 2.0 s"]
    assert running.fields() == {
        "percent": 45.0, "rows": 105_000, "rows_per_second": 52_500, "eta_seconds": 2.4,
        "elapsed_seconds": 2.0,
    }  # fmt: skip


def test_an_unknown_total_gives_rate_and_elapsed_only() -> None:
    live = Snapshot(rows=300, fraction=None, elapsed=1.5)
    assert live.parts() == ["300 rows", "200 rows/s", "elapsed 1.5 s"]
    assert live.eta is None
    assert Snapshot(rows=0, fraction=0.0, elapsed=0.0).eta is None  # no pace yet
    assert Snapshot(rows=1, fraction=1.0, elapsed=0.5).parts(final=True)[1] == "1 row"


def test_the_bar_draws_on_a_terminal_only() -> None:
    """Off a terminal (a pipe, a CI log) the bar never starts: nothing is drawn there, its
    owners log lines instead; on a terminal it draws and clears itself (transient)."""
    import io

    from rich.console import Console

    from market_data_core.progress import ProgressBar

    for terminal in (False, True):
        out = io.StringIO()
        bar = ProgressBar(
            lambda drawn: [drawn],
            console=Console(file=out, force_terminal=terminal, width=80),
            transient=True,
        )
        assert bar.redraws is terminal
        bar.add_task("job", total=1.0, completed=0.5)
        bar.start()
        bar.refresh()
        bar.stop()
        assert ("50%" in out.getvalue()) is terminal, out.getvalue()
