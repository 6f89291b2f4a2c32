"""The supervisor with real ``mdp run --control`` children: states, control, restarts, stop."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from market_data_core import ControlAction, ControlStatus
from market_data_core.testing.servers import scaled
from market_data_orchestrator.deployment import (
    Deployment,
    JobSpec,
    RestartPolicy,
    load_deployment,
)
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.supervisor import Progress, StateChange, Supervisor

S = JobState
TIMEOUT = 60.0


def pipeline(tmp_path: Path, name: str, provider: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "nodes:\n"
        f"  - {{id: trades, {provider}}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1s}}\n"
        "  - {id: sink, type: 'null'}\n"
        "edges: [trades -> bars, bars -> sink]\n"
    )
    return path


def paced(tmp_path: Path) -> Path:
    """Runs until stopped (a million trades at 2000/s)."""
    params = "symbols: 2, count: 1000000, batch_size: 200, rate: 2000"
    return pipeline(tmp_path, "paced", f"type: synthetic, params: {{{params}}}")


def quick(tmp_path: Path) -> Path:
    """Completes about a second after it starts."""
    params = "symbols: 2, count: 2000, batch_size: 200, rate: 2000"
    return pipeline(tmp_path, "quick", f"type: synthetic, params: {{{params}}}")


def failing(tmp_path: Path) -> Path:
    """Exits 1: the replayed file does not exist."""
    return pipeline(tmp_path, "failing", f"type: replay, params: {{path: '{tmp_path}/none.csv'}}")


def throttled(tmp_path: Path) -> Path:
    """Its drain never ends: an unpaced source fills the channel in front of a throttle at
    100 rows/s (minutes of rows)."""
    path = tmp_path / "throttled.yaml"
    path.write_text(
        "name: throttled\n"
        "nodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 2, count: 1000000, batch_size: 1000}}\n"
        "  - {id: slow, type: throttle, params: {rate: 100}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1s}}\n"
        "  - {id: sink, type: 'null'}\n"
        "edges: [trades -> slow, slow -> bars, bars -> sink]\n"
    )
    return path


def job(config: Path, name: str = "job", **fields: object) -> JobSpec:
    restart = fields.pop("restart", RestartPolicy(backoff_initial=0.1, backoff_max=0.5))
    return JobSpec.model_validate({"name": name, "config": config, "restart": restart, **fields})


async def wait_until(condition: Callable[[], bool], what: str, within: float = TIMEOUT) -> None:
    """Poll ``condition`` (states change in the supervisor's own tasks) up to ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(within)
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def report(supervisor: Supervisor, name: str = "job") -> Progress:
    progress = supervisor.progress(name)
    assert progress is not None, "no progress report yet"
    return progress


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def reaped(pid: int) -> bool:
    await wait_until(lambda: not alive(pid), f"process {pid} gone", within=5)
    return True


@pytest_asyncio.fixture
async def supervisors() -> AsyncIterator[list[Supervisor]]:
    """Supervisors made by a test, closed at its end even when it fails."""
    made: list[Supervisor] = []
    yield made
    errors = [
        e for e in await asyncio.gather(*(s.aclose() for s in made), return_exceptions=True) if e
    ]
    if errors:  # every one was closed first: none leaves its children behind
        raise errors[0]


def make(made: list[Supervisor], *jobs: JobSpec) -> tuple[Supervisor, list[StateChange]]:
    supervisor = Supervisor(Deployment(jobs=list(jobs)), stop_timeout=15.0)
    changes: list[StateChange] = []
    supervisor.add_listener(changes.append)
    made.append(supervisor)
    return supervisor, changes


@pytest.mark.asyncio
async def test_start_pause_resume_reload_and_stop(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor, changes = make(supervisors, job(paced(tmp_path)))
    info = await supervisor.start("job")
    assert info.state is S.STARTING
    await wait_until(lambda: supervisor.job("job").state is S.RUNNING, "running")
    pid = supervisor.job("job").replicas[0].pid
    assert pid is not None
    assert alive(pid)
    await wait_until(lambda: supervisor.progress("job") is not None, "a progress report")
    await wait_until(lambda: supervisor.job("job").replicas[0].items_per_second > 0, "items/s")

    paused = await supervisor.control("job", ControlAction.PAUSE, by="alice")
    assert paused.status is ControlStatus.ACCEPTED, paused.message
    assert paused.target == "job"
    info = supervisor.job("job")
    assert info.state is S.PAUSED
    assert info.paused_by == "alice"
    await wait_until(lambda: report(supervisor).state == "paused", "a paused report")
    held = report(supervisor)
    await wait_until(lambda: report(supervisor).seq >= held.seq + 2, "two more reports")
    assert report(supervisor).emitted == held.emitted  # the providers hold

    resumed = await supervisor.control("job", ControlAction.RESUME, by="bob")
    assert resumed.status is ControlStatus.ACCEPTED
    assert supervisor.job("job").state is S.RUNNING
    assert supervisor.job("job").paused_by is None
    await wait_until(lambda: report(supervisor).emitted > held.emitted, "emitting again")

    config = tmp_path / "paced.yaml"
    config.write_text(config.read_text().replace("sink", "sink2"))  # a re-read config shows
    reloaded = await supervisor.control("job", ControlAction.RELOAD, by="carol")
    assert reloaded.status is ControlStatus.ACCEPTED, reloaded.message
    assert reloaded.action is ControlAction.RELOAD
    await wait_until(lambda: supervisor.job("job").state is S.RUNNING, "running after reload")
    await wait_until(lambda: "sink2" in report(supervisor).nodes, "the reloaded graph")
    assert supervisor.job("job").replicas[0].pid == pid  # the same process, restarted inside
    assert alive(pid)

    info = await supervisor.stop("job")
    assert info.state is S.STOPPED
    replica = info.replicas[0]
    assert replica.last_exit_code == 0  # drained on SIGTERM
    assert replica.restarts == 0
    assert await reaped(pid)
    job_moves = [(c.old, c.new) for c in changes if c.replica is None]
    assert (S.RUNNING, S.PAUSED) in job_moves
    assert (S.PAUSED, S.RUNNING) in job_moves
    assert job_moves[-2:] == [(S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED)]
    after_stop = await supervisor.control("job", ControlAction.PAUSE, by="alice")
    assert after_stop.status is ControlStatus.REJECTED


@pytest.mark.asyncio
async def test_control_of_a_job_that_is_not_running_is_rejected(tmp_path: Path) -> None:
    supervisor = Supervisor(Deployment(jobs=[job(paced(tmp_path))]))
    try:
        for action in ControlAction:
            result = await supervisor.control("job", action, by="alice")
            assert result.status is ControlStatus.REJECTED
            assert "not running" in result.message
        assert supervisor.job("job").paused_by is None
        assert supervisor.job("job").state is S.PENDING
        with pytest.raises(KeyError, match="nope"):
            supervisor.job("nope")
        with pytest.raises(KeyError):
            await supervisor.control("nope", ControlAction.PAUSE, by="alice")
    finally:
        await supervisor.aclose()
    assert supervisor.job("job").state is S.STOPPED


@pytest.mark.asyncio
async def test_a_job_that_completes_is_not_restarted_on_failure(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor, changes = make(supervisors, job(quick(tmp_path)))
    await supervisor.start_all()
    await wait_until(lambda: supervisor.job("job").state is S.COMPLETED, "completed")
    info = supervisor.job("job")
    assert info.restarts == 0
    assert info.replicas[0].last_exit_code == 0
    assert info.last_error is None
    replica_moves = [c.new for c in changes if c.replica == 0]
    assert replica_moves == [S.STARTING, S.RUNNING, S.COMPLETED]
    assert (await supervisor.control("job", ControlAction.PAUSE, by="x")).status is (
        ControlStatus.REJECTED
    )


@pytest.mark.asyncio
async def test_kill_9_restarts_the_replica_and_a_paused_job_restarts_paused(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor, changes = make(supervisors, job(paced(tmp_path)))
    await supervisor.start_all()
    await wait_until(lambda: supervisor.job("job").state is S.RUNNING, "running")
    first = supervisor.job("job").replicas[0].pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await wait_until(
        lambda: supervisor.job("job").restarts == 1 and supervisor.job("job").state is S.RUNNING,
        "restarted",
    )
    replica = supervisor.job("job").replicas[0]
    assert replica.pid not in (None, first)
    assert replica.last_exit_code == -signal.SIGKILL
    assert replica.last_error is not None
    assert "SIGKILL" in replica.last_error
    assert any(c.new is S.PENDING and "restarting in" in c.reason for c in changes)
    assert not alive(first)

    assert (await supervisor.control("job", ControlAction.PAUSE, by="store-health")).ok
    second = replica.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)
    await wait_until(
        lambda: supervisor.job("job").restarts == 2 and supervisor.job("job").state is S.PAUSED,
        "restarted paused",
    )
    info = supervisor.job("job")
    assert info.paused_by == "store-health"
    assert info.replicas[0].pid not in (None, first, second)
    # a report the child sent before the pause reached it may come first: it says running
    await wait_until(
        lambda: (progress := supervisor.progress("job")) is not None and progress.state == "paused",
        "a report of the paused job",
    )


@pytest.mark.asyncio
async def test_a_crash_loop_ends_failed_with_the_error(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    restart = RestartPolicy(backoff_initial=0.05, backoff_max=0.1, crash_loop_limit=1)
    supervisor, changes = make(supervisors, job(failing(tmp_path), restart=restart))
    await supervisor.start("job")
    await wait_until(lambda: supervisor.job("job").state is S.FAILED, "failed")
    info = supervisor.job("job")
    assert info.restarts == 1
    assert info.replicas[0].last_exit_code == 1
    assert info.last_error is not None
    assert "crash loop" in info.last_error
    assert "file not found" in info.last_error
    assert [c.new for c in changes if c.replica is None][-1] is S.FAILED
    # a failed job can be started again (a fresh crash-loop window)
    await supervisor.start("job")
    await wait_until(lambda: supervisor.job("job").restarts == 2, "restarting again")
    await wait_until(lambda: supervisor.job("job").state is S.FAILED, "failed again")


@pytest.mark.asyncio
async def test_an_invalid_config_fails_at_once_and_never_restarts(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    config = pipeline(tmp_path, "broken", "type: no_such_provider")
    supervisor, _ = make(supervisors, job(config, restart=RestartPolicy(policy="always")))
    await supervisor.start("job")
    await wait_until(lambda: supervisor.job("job").state is S.FAILED, "failed")
    info = supervisor.job("job")
    assert info.restarts == 0
    assert info.replicas[0].last_exit_code == 2
    assert info.last_error is not None
    assert "no_such_provider" in info.last_error


@pytest.mark.asyncio
async def test_aclose_stops_every_child_even_paused_ones(tmp_path: Path) -> None:
    supervisor = Supervisor(
        Deployment(jobs=[job(paced(tmp_path), replicas=2), job(paced(tmp_path), name="other")])
    )
    events: list[StateChange] = []

    async def collect() -> None:
        events.extend([change async for change in supervisor.events()])

    collector = asyncio.create_task(collect())
    try:
        await supervisor.start_all()
        await wait_until(
            lambda: all(j.state is S.RUNNING for j in supervisor.jobs()), "all running"
        )
        assert (await supervisor.control("other", ControlAction.PAUSE, by="alice")).ok
        pids = [r.pid for j in supervisor.jobs() for r in j.replicas]
    finally:
        await supervisor.aclose()
    assert len(pids) == 3
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for info in supervisor.jobs():
        assert info.state is S.STOPPED
        assert all(r.last_exit_code == 0 for r in info.replicas)  # drained, not killed
    await asyncio.wait_for(collector, scaled(5))  # the event stream ended with the supervisor
    assert {(e.name, e.new) for e in events if e.replica is None} >= {
        ("job", S.RUNNING),
        ("other", S.PAUSED),
        ("job", S.STOPPED),
        ("other", S.STOPPED),
    }


@pytest.mark.asyncio
async def test_a_scheduled_job_runs_at_each_fire_time(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    spec = job(quick(tmp_path), schedule="* * * * * */2")  # every 2 seconds
    supervisor, changes = make(supervisors, spec)
    await supervisor.start_all()
    assert supervisor.job("job").schedule == "* * * * * */2"
    await wait_until(lambda: supervisor.job("job").next_run is not None, "next run")
    await wait_until(
        lambda: sum(c.new is S.STARTING for c in changes if c.replica == 0) >= 2, "a second run"
    )
    moves = [c.new for c in changes if c.replica == 0]
    assert moves[:4] == [S.STARTING, S.RUNNING, S.COMPLETED, S.STARTING]
    assert supervisor.job("job").restarts == 0  # a scheduled run is not a restart


async def flowing(supervisor: Supervisor, name: str = "job") -> None:
    """Until the job runs (its SIGTERM handler is installed) and rows pass its throttle."""
    await wait_until(lambda: supervisor.job(name).state is S.RUNNING, "running")
    await wait_until(
        lambda: (p := supervisor.progress(name)) is not None and p.nodes["slow"]["out"] > 0,
        "rows through the throttle",
    )


@pytest.mark.asyncio
async def test_a_stopped_mdp_run_gives_up_its_drain_in_time_and_is_not_killed(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """The defaults fit: mdp's drain timeout ends the drain (which would take minutes)
    before the job's stop timeout, so the child exits 0 on its own."""
    supervisor = Supervisor(Deployment(jobs=[job(throttled(tmp_path))]))
    supervisors.append(supervisor)
    await supervisor.start("job")
    await flowing(supervisor)
    info = await supervisor.stop("job")
    replica = info.replicas[0]
    assert info.state is S.STOPPED
    assert replica.last_exit_code == 0  # exited by itself: not SIGKILLed
    assert replica.last_error is None
    assert info.last_error is None


@pytest.mark.asyncio
async def test_the_deployment_files_stop_timeout_reaches_the_supervisor(tmp_path: Path) -> None:
    throttled(tmp_path)
    (tmp_path / "deployment.yaml").write_text(
        "jobs:\n"
        "  - name: job\n"
        "    config: throttled.yaml\n"
        "    stop_timeout: 1\n"
        "    env: {MDP_DRAIN_TIMEOUT: '3600'}\n"  # a drain that outlasts the stop timeout
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    orchestrator = Orchestrator(load_deployment(tmp_path / "deployment.yaml"))
    supervisor = orchestrator.supervisor
    try:
        assert supervisor.stop_timeout_of("job") == 1.0
        await supervisor.start("job")
        await flowing(supervisor)
        info = await supervisor.stop("job")
    finally:
        await orchestrator.aclose()
    replica = info.replicas[0]
    assert info.state is S.STOPPED
    assert replica.last_exit_code == -signal.SIGKILL
    assert replica.last_error == "did not stop within 1 s: killed"


ORCHESTRATOR = """
import asyncio, sys
from pathlib import Path
from market_data_orchestrator.deployment import Deployment, JobSpec
from market_data_orchestrator.supervisor import Supervisor

async def main() -> None:
    spec = JobSpec(name="job", config=Path(sys.argv[1]))
    supervisor = Supervisor(Deployment(jobs=[spec]))
    await supervisor.start_all()
    while supervisor.job("job").state.value != "running":
        await asyncio.sleep(0.05)
    print("pid", supervisor.job("job").replicas[0].pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_children_die_with_a_killed_orchestrator(tmp_path: Path) -> None:
    script = tmp_path / "orchestrator.py"
    script.write_text(ORCHESTRATOR)
    orchestrator = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(paced(tmp_path)), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert orchestrator.stdout is not None
        line = b""
        while not line.startswith(b"pid "):  # skip the orchestrator's log lines
            line = await asyncio.wait_for(orchestrator.stdout.readline(), TIMEOUT)
            assert line, "the orchestrator ended"
        child = int(line.split()[1])
        assert alive(child)
    finally:
        orchestrator.kill()  # no chance to clean up: the kernel tells the child
        await orchestrator.wait()
    try:
        await wait_until(lambda: not alive(child), "the orphan to exit", within=30)
    finally:
        if alive(child):  # the test failed: do not leave the orphan behind
            os.kill(child, signal.SIGKILL)


def partitioned(tmp_path: Path) -> Path:
    """Runs until stopped; each partition's copy seeds its own trades."""
    params = "symbols: 2, count: 1000000, batch_size: 200, rate: 1000, seed: '{partition}'"
    return pipeline(tmp_path, "parts", f"type: synthetic, params: {{{params}}}")


def owned(supervisor: Supervisor, replica: int) -> set[int] | None:
    """The partitions a replica's child runs, from the node ids of its progress reports."""
    progress = supervisor.progress("job", replica)
    if progress is None:
        return None
    return {int(n.rsplit("-p", 1)[1]) for n in progress.nodes if n.startswith("trades-p")}


@pytest.mark.asyncio
async def test_scaling_a_partitioned_job_rebalances_its_partitions(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor, changes = make(supervisors, job(partitioned(tmp_path), partitions=4))
    await supervisor.start("job")
    await wait_until(lambda: owned(supervisor, 0) == {0, 1, 2, 3}, "one replica with all four")
    first = supervisor.job("job").replicas[0]
    assert first.partitions == [0, 1, 2, 3]
    assert first.pid is not None

    info = await supervisor.scale("job", 2, by="alice")
    assert info.desired_replicas == 2
    assert [r.partitions for r in info.replicas] == [[0, 2], [1, 3]]
    await wait_until(lambda: owned(supervisor, 0) == {0, 2}, "replica 0 on partitions 0, 2")
    await wait_until(lambda: owned(supervisor, 1) == {1, 3}, "replica 1 on partitions 1, 3")
    assert await reaped(first.pid)  # the old assignment stopped before the new one started
    stops = [c for c in changes if c.replica == 0 and c.new is S.STOPPED]
    assert stops, "replica 0 was not stopped for the rebalance"
    assert supervisor.job("job").state is S.RUNNING

    with pytest.raises(ValueError, match="at most 4 replicas"):
        await supervisor.scale("job", 5, by="alice")
    assert supervisor.job("job").desired_replicas == 2  # a refused scale changes nothing

    info = await supervisor.scale("job", 1, by="bob")
    assert [r.partitions for r in info.replicas] == [[0, 1, 2, 3]]
    await wait_until(lambda: owned(supervisor, 0) == {0, 1, 2, 3}, "all four again")
    assert len(supervisor.job("job").replicas) == 1


@pytest.mark.asyncio
async def test_scaling_a_job_without_partitions_adds_and_removes_replicas_only(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    supervisor, _ = make(supervisors, job(paced(tmp_path)))
    await supervisor.start("job")
    await wait_until(lambda: supervisor.job("job").state is S.RUNNING, "running")
    kept = supervisor.job("job").replicas[0].pid

    info = await supervisor.scale("job", 3, by="alice")
    assert len(info.replicas) == 3
    await wait_until(
        lambda: all(r.state is S.RUNNING for r in supervisor.job("job").replicas), "three running"
    )
    pids = [r.pid for r in supervisor.job("job").replicas]
    assert pids[0] == kept  # the running replica went on
    assert len(set(pids)) == 3

    info = await supervisor.scale("job", 1, by="alice")
    assert [r.pid for r in info.replicas] == [kept]
    for pid in pids[1:]:
        assert pid is not None
        assert await reaped(pid)

    await supervisor.stop("job")
    info = await supervisor.scale("job", 2, by="alice")  # a stopped job stays stopped
    assert info.state is S.STOPPED
    assert all(r.pid is None or not alive(r.pid) for r in info.replicas)
    assert len(info.replicas) == 2
