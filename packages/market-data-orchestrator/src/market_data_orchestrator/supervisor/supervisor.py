"""The ``Supervisor``: the jobs of a deployment, their replicas' states and the API that
starts, stops, controls and scales them (see the package's docstring)."""

from __future__ import annotations

import asyncio
import random as _random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType

import structlog

from market_data_core import ControlAction, ControlResult, ControlStatus
from market_data_core.job_protocol import (
    JobControlAck,
    JobError,
    JobProgress,
    JobStarted,
    RunSummary,
)
from market_data_orchestrator.deployment import Deployment, JobSpec
from market_data_orchestrator.exceptions import SupervisorClosedError
from market_data_orchestrator.jobs import JobInfo, JobState
from market_data_orchestrator.lifecycle import TERMINAL, Backoff, CrashLoop, aggregate, transition
from market_data_orchestrator.supervisor import control, restart
from market_data_orchestrator.supervisor.changes import StateChanges
from market_data_orchestrator.supervisor.process import (
    child_argv,
    child_env,
    kill_group,
    signal_process,
    spawn,
    terminate,
)
from market_data_orchestrator.supervisor.records import (
    LIVE,
    JobRecord,
    Progress,
    ReplicaRecord,
    StateChange,
    combined_status,
    control_result,
)
from market_data_orchestrator.supervisor.scaling import check_replicas
from market_data_orchestrator.supervisor.schedule import run_schedule
from market_data_orchestrator.supervisor.streams import (
    AnyJobEvent,
    read_events,
    read_stderr,
    record_progress,
)

__all__ = ["Progress", "StateChange", "Supervisor", "SupervisorClosedError"]

logger = structlog.get_logger("market_data_orchestrator.supervisor")

_S = JobState


class Supervisor:
    """Supervises the jobs of a ``Deployment`` (implements ``jobs.JobController``).

    ``clock`` (monotonic seconds) drives backoff resets, crash-loop windows and items/s;
    ``sleep`` waits for backoff delays and cron fire times; ``random`` is the backoff
    jitter. A replica that ran ``stable_after`` seconds before crashing restarts with the
    initial backoff again. ``stop_timeout``, when given, replaces every job's own
    ``stop_timeout``.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        python: str = sys.executable,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        stop_timeout: float | None = None,
        control_timeout: float = 10.0,
        stable_after: float = 30.0,
    ) -> None:
        self.deployment = deployment
        self.python = python
        self.stop_timeout = stop_timeout
        self.control_timeout = control_timeout
        self.stable_after = stable_after
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._jobs = {spec.name: self._new_job(spec) for spec in deployment.jobs}
        self._changes = StateChanges()
        self._cron_tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _new_job(self, spec: JobSpec) -> JobRecord:
        job = JobRecord(spec)
        job.replicas = [self._new_replica(job, index) for index in range(spec.replicas)]
        return job

    def _new_replica(self, job: JobRecord, index: int) -> ReplicaRecord:
        policy = job.spec.restart
        backoff = Backoff(policy.backoff_initial, policy.backoff_max, random=self._random)
        crash_loop = CrashLoop(policy.crash_loop_limit, policy.crash_loop_window, clock=self._clock)
        return ReplicaRecord(job, index, backoff, crash_loop)

    # -- JobController -----------------------------------------------------------------

    def jobs(self) -> list[JobInfo]:
        return [self._info(job) for job in self._jobs.values()]

    def job(self, name: str) -> JobInfo:
        return self._info(self._get(name))

    async def start(self, name: str) -> JobInfo:
        """Start every replica of the job (a no-op for replicas already running)."""
        job = self._get(name)
        if self._closed:
            raise SupervisorClosedError("the supervisor is closed")
        for replica in job.replicas:
            if replica.active:
                continue
            replica.stop_requested = False
            replica.backoff.reset()
            replica.crash_loop.reset()
            self._set(replica, _S.STARTING, "start requested")
            replica.task = asyncio.create_task(
                self._supervise(replica), name=f"mdo-{name}-{replica.index}"
            )
        return self._info(job)

    def stop_timeout_of(self, name: str) -> float:
        """Seconds a replica of the job may take to stop before it is killed."""
        spec = self._get(name).spec
        return self.stop_timeout if self.stop_timeout is not None else spec.stop_timeout

    async def stop(self, name: str) -> JobInfo:
        """Stop every replica with drain (SIGTERM), SIGKILL after its ``stop_timeout``."""
        job = self._get(name)
        await asyncio.gather(*(self._stop_replica(r) for r in job.replicas))
        return self._info(job)

    async def control(self, name: str, action: ControlAction, *, by: str) -> ControlResult:
        """Send ``action`` to every running replica; accepted only if all accept."""
        job = self._get(name)
        live = [r for r in job.replicas if r.live]
        if not live:
            if action is ControlAction.RESUME and job.paused_by is not None:
                job.paused_by = None
                return control_result(
                    action, name, ControlStatus.ACCEPTED, "not running; pause cleared"
                )
            return control_result(
                action, name, ControlStatus.REJECTED, f"job {name} is not running ({job.state})"
            )
        answers = await asyncio.gather(
            *(control.command(r, action, self.control_timeout) for r in live)
        )
        status = combined_status(answers)
        if status is ControlStatus.ACCEPTED:
            if action is ControlAction.PAUSE:
                job.paused_by = by
            elif action is ControlAction.RESUME:
                job.paused_by = None
        message = "; ".join(
            f"replica {r.index}: {a.status}{': ' + a.message if a.message else ''}"
            for r, a in zip(live, answers, strict=True)
        )
        logger.info("job control", job=name, action=str(action), by=by, status=str(status))
        return control_result(action, name, status, message[:1024])

    async def scale(self, name: str, replicas: int, *, by: str) -> JobInfo:
        """Keep ``replicas`` children of the job from now on, whether it runs or not.

        A job without partitions gains or loses replicas at the end; the others go on. A
        partitioned job is rebalanced eagerly (Kafka's classic protocol): every replica
        stops with drain (what it committed is acknowledged, the rest stays pending in its
        streams), then the new set starts, replica i owning the partitions p with
        ``p % replicas == i``, and reads on from what was acknowledged. ``ValueError``
        when the count is not possible (below 1, above the partitions).
        """
        job = self._get(name)
        spec = job.spec
        check_replicas(name, spec, replicas)
        if self._closed:
            raise SupervisorClosedError("the supervisor is closed")
        async with job.scaling:
            before = len(job.replicas)
            if replicas == before:
                return self._info(job)
            running = any(r.active for r in job.replicas)
            job.spec = spec.model_copy(update={"replicas": replicas})
            if spec.partitions is not None:
                await asyncio.gather(*(self._stop_replica(r) for r in job.replicas))
                job.replicas = [self._new_replica(job, i) for i in range(replicas)]
            elif replicas > before:
                job.replicas.extend(self._new_replica(job, i) for i in range(before, replicas))
            else:
                await asyncio.gather(*(self._stop_replica(r) for r in job.replicas[replicas:]))
                del job.replicas[replicas:]
            logger.info("job scaled", job=name, replicas=replicas, before=before, by=by)
            if running:
                await self.start(name)
            else:  # new replicas of a job that ran before are as stopped as the others
                if job.state is not _S.PENDING:
                    for replica in job.replicas:
                        if replica.state is _S.PENDING:
                            replica.state = _S.STOPPED
                self._refresh(job, f"scaled to {replicas} by {by}")
            return self._info(job)

    def progress(self, name: str, replica: int = 0) -> Progress | None:
        """The latest progress report of a replica's current child (None before the first)."""
        return self._get(name).replicas[replica].progress

    # -- the whole deployment ----------------------------------------------------------

    async def start_all(self) -> None:
        """Start every unscheduled job; scheduled jobs start at their cron fire times."""
        for job in self._jobs.values():
            if job.spec.schedule is None:
                await self.start(job.spec.name)
            else:
                self._cron_tasks.append(
                    asyncio.create_task(
                        run_schedule(job, self.start, self._sleep), name=f"mdo-cron-{job.spec.name}"
                    )
                )

    async def aclose(self) -> None:
        """Stop every job (drain, then SIGKILL after its ``stop_timeout``); end event
        streams."""
        if self._closed:
            return
        self._closed = True
        self._changes.refuse_new()
        for task in self._cron_tasks:
            task.cancel()
        await asyncio.gather(*self._cron_tasks, return_exceptions=True)
        await asyncio.gather(*(self.stop(name) for name in self._jobs))
        self._changes.end()

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- state-change events -----------------------------------------------------------

    def add_listener(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``callback`` on every state change; returns a function that removes it."""
        return self._changes.add_listener(callback)

    def events(self, *, maxsize: int = 1000) -> AsyncIterator[StateChange]:
        """State changes from now on, until the supervisor closes (oldest dropped if full)."""
        return self._changes.subscribe(maxsize=maxsize)

    def _set(
        self, replica: ReplicaRecord, new: JobState, reason: str = "", *, strict: bool = True
    ) -> None:
        old = replica.state
        if old is new:
            return
        replica.state = transition(old, new) if strict else new
        job = replica.job
        name = job.spec.name
        now = datetime.now(UTC)
        logger.info(
            "replica state", job=name, replica=replica.index, old=str(old), new=str(new),
            reason=reason,
        )  # fmt: skip
        self._changes.publish(StateChange(name=name, replica=replica.index, old=old, new=new,
                               reason=reason, ts=now))  # fmt: skip
        self._refresh(job, reason, now)

    def _refresh(self, job: JobRecord, reason: str, now: datetime | None = None) -> None:
        """Recompute the job's state from its replicas' (announce a change)."""
        job_state = aggregate(r.state for r in job.replicas)
        if job_state is not job.state:
            previous, job.state = job.state, job_state
            self._changes.publish(StateChange(name=job.spec.name, replica=None, old=previous,
                                   new=job_state, reason=reason,
                                   ts=now or datetime.now(UTC)))  # fmt: skip

    # -- one replica -------------------------------------------------------------------

    async def _supervise(self, replica: ReplicaRecord) -> None:
        try:
            while True:
                code = await self._run_once(replica)
                verdict = restart.after_exit(
                    replica, code, clock=self._clock, stable_after=self.stable_after
                )
                self._set(replica, verdict.state, verdict.reason)
                if verdict.delay is None:
                    return
                await self._sleep(verdict.delay)
                replica.restarts += 1
                self._set(replica, _S.STARTING, f"restart {replica.restarts}")
        except asyncio.CancelledError:
            if replica.state not in TERMINAL:
                self._force(replica, _S.STOPPED, "stopped")
            raise
        except Exception as error:  # a bug here must not leave the replica running
            logger.exception("replica supervision failed", job=replica.job.spec.name)
            replica.last_error = f"supervision failed: {error!r}"[: restart.ERROR_CHARS]
            self._force(replica, _S.FAILED, replica.last_error)

    def _force(self, replica: ReplicaRecord, new: JobState, reason: str) -> None:
        """Set a state even if the lifecycle would not allow the move (cleanup paths)."""
        self._set(replica, new, reason, strict=False)

    async def _run_once(self, replica: ReplicaRecord) -> int | None:
        """Run one child to its end; its exit code (None if it could not be started)."""
        self._set(replica, _S.STARTING, "starting")
        replica.summary_state = None
        replica.stderr.clear()
        replica.samples.clear()
        replica.progress = None
        replica.items_per_second = 0.0
        spec = replica.job.spec
        try:
            process = await spawn(
                child_argv(self.python, spec, replica.index), env=child_env(spec), cwd=spec.cwd
            )
        except OSError as error:
            replica.stderr.append(f"error: cannot start the child: {error}")
            return None
        replica.process, replica.pid = process, process.pid
        replica.started_mono = self._clock()
        if replica.stop_requested:
            signal_process(process, signal.SIGTERM)
        stderr = asyncio.create_task(read_stderr(replica, process))
        try:
            await read_events(replica, process, self._on_event)
            code = await process.wait()
            await stderr
        finally:
            if process.returncode is None:
                kill_group(process)
                await process.wait()
            stderr.cancel()
            await asyncio.gather(stderr, return_exceptions=True)
            self._release(replica, process)
        return code

    def _release(self, replica: ReplicaRecord, process: asyncio.subprocess.Process) -> None:
        if process.stdin is not None:
            process.stdin.close()
        replica.process = None
        replica.items_per_second = 0.0
        control.fail_pending(replica)

    def _on_event(self, replica: ReplicaRecord, event: AnyJobEvent) -> None:
        if isinstance(event, JobStarted):
            replica.started_at = datetime.now(UTC)
            replica.started_mono = self._clock()
            if replica.state is _S.STARTING:
                self._set(replica, _S.RUNNING, "started")
            if replica.job.paused_by is not None:  # the job is paused: so is a new replica
                control.send(replica, ControlAction.PAUSE)
        elif isinstance(event, JobProgress):
            record_progress(replica, event, self._clock())
            if replica.state in LIVE:
                if event.state == "paused":
                    self._set(replica, _S.PAUSED, "paused")
                elif event.state == "running":
                    self._set(replica, _S.RUNNING, "running")
        elif isinstance(event, JobControlAck):
            self._on_ack(replica, event)
        elif isinstance(event, RunSummary):
            replica.summary_state = event.state
            drain = event.drain
            if drain is not None and not drain.complete:
                not_flushed = drain.not_flushed
                logger.warning(
                    "replica stopped before everything was flushed",
                    job=replica.job.spec.name,
                    replica=replica.index,
                    timeout=drain.timeout,
                    not_flushed=not_flushed.model_dump() if not_flushed else None,
                )
        elif isinstance(event, JobError):
            logger.warning("child error", job=replica.job.spec.name, message=event.message)

    def _on_ack(self, replica: ReplicaRecord, event: JobControlAck) -> None:
        result = control.settle(replica, event)
        if result.ok and replica.state in LIVE:
            if result.action is ControlAction.PAUSE:
                self._set(replica, _S.PAUSED, "pause acknowledged")
            elif result.action is ControlAction.RESUME:
                self._set(replica, _S.RUNNING, "resume acknowledged")

    async def _stop_replica(self, replica: ReplicaRecord) -> None:
        task = replica.task
        if task is None or task.done():
            if replica.state in {_S.PENDING, _S.STARTING}:
                self._force(replica, _S.STOPPED, "stopped before it started")
            return
        replica.stop_requested = True
        process = replica.process
        if process is None or process.returncode is not None:
            task.cancel()  # waiting for a backoff delay, or being spawned
            await asyncio.gather(task, return_exceptions=True)
            return
        self._set(replica, _S.STOPPING, "stop requested")
        timeout = self.stop_timeout_of(replica.job.spec.name)
        done = await terminate(process, task, timeout)
        if not done:
            logger.warning("replica did not drain: killed", job=replica.job.spec.name,
                           replica=replica.index, timeout=timeout)  # fmt: skip
            replica.last_error = f"did not stop within {timeout:g} s: killed"
            kill_group(process)
            await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # -- views -------------------------------------------------------------------------

    def _get(self, name: str) -> JobRecord:
        try:
            return self._jobs[name]
        except KeyError:
            raise KeyError(f"no job named {name!r}") from None

    @staticmethod
    def _info(job: JobRecord) -> JobInfo:
        spec = job.spec
        return JobInfo(
            name=spec.name,
            config=str(spec.config),
            state=job.state,
            replicas=[r.info() for r in job.replicas],
            desired_replicas=spec.replicas,
            partitions=spec.partitions,
            restarts=sum(r.restarts for r in job.replicas),
            last_error=job.last_error,
            writes_to_store=spec.writes_to_store,
            paused_by=job.paused_by,
            schedule=spec.schedule,
            next_run=job.next_run,
        )
