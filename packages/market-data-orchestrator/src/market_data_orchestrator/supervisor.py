"""Runs a deployment's jobs as supervised child processes of ``mdp run CONFIG --control``.

Each replica of a job is one child, started in its own process group and told (on Linux)
to get SIGTERM if the orchestrator dies, so no child outlives it. A task per replica
spawns the child, reads its JSON-line events (``started``, ``progress``, ``control``,
``summary``), maps them to ``JobState``, and restarts the child per the job's restart
policy with ``Backoff`` and ``CrashLoop``:

- exit 0 after ``stop``: stopped; exit 0 with a ``completed`` summary: completed (restarted
  only under ``always``); exit 2 (invalid config): failed at once, a restart cannot help;
  any other exit (or a signal): a crash, restarted under ``on-failure`` and ``always``
  until the crash-loop limit, then failed with the reason in ``last_error``.
- ``control`` sends pause / resume / reload to every running replica over its stdin and
  waits for each acknowledgement; a pause is held (``paused_by``) so that a replica that
  restarts while the job is paused starts paused.
- ``stop`` and ``aclose`` send SIGTERM (the child drains, for at most its
  ``MDP_DRAIN_TIMEOUT``, and exits 0), wait up to the job's ``stop_timeout``, then SIGKILL
  the replica's process group. A child whose summary says its drain timed out is logged
  with what it could not flush.

State changes are published as ``StateChange`` events (per replica, and per job with
``replica=None``) to callbacks (``add_listener``) and async iterators (``events()``).
"""

from __future__ import annotations

import asyncio
import os
import random as _random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from uuid import uuid4

import structlog
from croniter import croniter
from pydantic import ValidationError

from market_data_core import ControlAction, ControlResult, ControlStatus
from market_data_core.job_protocol import (
    JobCommand,
    JobControlAck,
    JobError,
    JobEvent,
    JobProgress,
    JobStarted,
    RunSummary,
)
from market_data_orchestrator._process import kill_group, signal_process, spawn
from market_data_orchestrator._replica import (
    LIVE,
    JobRecord,
    Progress,
    ReplicaRecord,
    StateChange,
    SupervisorClosedError,
    combined_status,
    control_result,
    offer,
    signal_name,
)
from market_data_orchestrator.deployment import Deployment, JobSpec, RestartPolicyName
from market_data_orchestrator.jobs import JobInfo, JobState
from market_data_orchestrator.lifecycle import (
    TERMINAL,
    Backoff,
    CrashLoop,
    aggregate,
    transition,
)

__all__ = ["Progress", "StateChange", "Supervisor", "SupervisorClosedError"]

AnyJobEvent = JobStarted | JobProgress | JobControlAck | JobError | RunSummary

logger = structlog.get_logger(__name__)
Process = asyncio.subprocess.Process

_S = JobState
_INVALID_CONFIG = 2
_ERROR_CHARS = 500
_RESIGNAL_EVERY = 1.0


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
        self._listeners: list[Callable[[StateChange], None]] = []
        self._queues: set[asyncio.Queue[StateChange | None]] = set()
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
        answers = await asyncio.gather(*(self._command(r, action) for r in live))
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
        _check_scale(name, spec, replicas)
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
                    asyncio.create_task(self._cron(job), name=f"mdo-cron-{job.spec.name}")
                )

    async def aclose(self) -> None:
        """Stop every job (drain, then SIGKILL after its ``stop_timeout``); end event
        streams."""
        if self._closed:
            return
        self._closed = True
        for task in self._cron_tasks:
            task.cancel()
        await asyncio.gather(*self._cron_tasks, return_exceptions=True)
        await asyncio.gather(*(self.stop(name) for name in self._jobs))
        for queue in self._queues:
            offer(queue, None)

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
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def events(self, *, maxsize: int = 1000) -> AsyncIterator[StateChange]:
        """State changes from now on, until the supervisor closes (oldest dropped if full)."""
        if self._closed:
            return
        queue: asyncio.Queue[StateChange | None] = asyncio.Queue(maxsize=maxsize)
        self._queues.add(queue)
        try:
            while (change := await queue.get()) is not None:
                yield change
        finally:
            self._queues.discard(queue)

    def _emit(self, change: StateChange) -> None:
        for callback in list(self._listeners):
            try:
                callback(change)
            except Exception:
                logger.exception("state-change listener failed", job=change.name)
        for queue in self._queues:
            offer(queue, change)

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
        self._emit(StateChange(name=name, replica=replica.index, old=old, new=new,
                               reason=reason, ts=now))  # fmt: skip
        self._refresh(job, reason, now)

    def _refresh(self, job: JobRecord, reason: str, now: datetime | None = None) -> None:
        """Recompute the job's state from its replicas' (announce a change)."""
        job_state = aggregate(r.state for r in job.replicas)
        if job_state is not job.state:
            previous, job.state = job.state, job_state
            self._emit(StateChange(name=job.spec.name, replica=None, old=previous,
                                   new=job_state, reason=reason,
                                   ts=now or datetime.now(UTC)))  # fmt: skip

    # -- one replica -------------------------------------------------------------------

    async def _supervise(self, replica: ReplicaRecord) -> None:
        try:
            while True:
                code = await self._run_once(replica)
                delay = self._after_exit(replica, code)
                if delay is None:
                    return
                await self._sleep(delay)
                replica.restarts += 1
                self._set(replica, _S.STARTING, f"restart {replica.restarts}")
        except asyncio.CancelledError:
            if replica.state not in TERMINAL:
                self._force(replica, _S.STOPPED, "stopped")
            raise
        except Exception as error:  # a bug here must not leave the replica running
            logger.exception("replica supervision failed", job=replica.job.spec.name)
            replica.last_error = f"supervision failed: {error!r}"[:_ERROR_CHARS]
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
            process = await spawn(self._argv(replica), env=self._env(spec), cwd=spec.cwd)
        except OSError as error:
            replica.stderr.append(f"error: cannot start the child: {error}")
            return None
        replica.process, replica.pid = process, process.pid
        replica.started_mono = self._clock()
        if replica.stop_requested:
            signal_process(process, signal.SIGTERM)
        stderr = asyncio.create_task(self._read_stderr(replica, process))
        try:
            await self._read_events(replica, process)
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
        for action, ack in replica.acks.values():
            if not ack.done():
                ack.set_result(
                    control_result(action, replica.job.spec.name, ControlStatus.FAILED,
                            "the replica exited before acknowledging")
                )  # fmt: skip
        replica.acks.clear()

    def _argv(self, replica: ReplicaRecord) -> list[str]:
        spec = replica.job.spec
        config = spec.config if spec.config.is_absolute() else Path.cwd() / spec.config
        argv = [self.python, "-m", "market_data_pipeline.cli", "run", str(config), "--control"]
        partitions = spec.partitions_of(replica.index)
        if partitions is not None:
            argv += ["--partitions", ",".join(map(str, partitions))]
        return argv

    @staticmethod
    def _env(spec: JobSpec) -> dict[str, str]:
        return {**os.environ, **spec.environment()}

    def _after_exit(self, replica: ReplicaRecord, code: int | None) -> float | None:
        """Record how the child ended; the delay before restarting it, or None."""
        replica.last_exit_code = code
        policy = replica.job.spec.restart.policy
        if replica.stop_requested:
            self._set(replica, _S.STOPPED, f"stopped (exit code {code})")
            return None
        if code == 0:
            completed = replica.summary_state == "completed"
            if policy is not RestartPolicyName.ALWAYS:
                self._set(replica, _S.COMPLETED if completed else _S.STOPPED,
                          "ran to completion" if completed else "exited 0")  # fmt: skip
                return None
            return self._restart_delay(replica, "exited 0")
        error = self._exit_error(replica, code)
        replica.last_error = replica.job.last_error = error
        if code == _INVALID_CONFIG:
            self._set(replica, _S.FAILED, f"invalid config, not restarted: {error}")
            return None
        if policy is RestartPolicyName.NEVER:
            self._set(replica, _S.FAILED, error)
            return None
        return self._restart_delay(replica, error)

    def _restart_delay(self, replica: ReplicaRecord, why: str) -> float | None:
        started = replica.started_mono
        if started is not None and self._clock() - started >= self.stable_after:
            replica.backoff.reset()
        if not replica.crash_loop.allow():
            reason = f"{replica.crash_loop.reason}; last exit: {why}"[:_ERROR_CHARS]
            replica.last_error = replica.job.last_error = reason
            self._set(replica, _S.FAILED, reason)
            return None
        delay = replica.backoff.next()
        self._set(replica, _S.PENDING, f"{why}; restarting in {delay:.2f} s")
        return delay

    def _exit_error(self, replica: ReplicaRecord, code: int | None) -> str:
        if code is None:
            how = "could not be started"
        elif code < 0:
            how = f"killed by {signal_name(-code)}"
        else:
            how = f"exited with code {code}"
        lines = [line.strip() for line in replica.stderr if line.strip()]
        starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
        message = None
        if starts:  # the CLI's last error, which a narrow console may have wrapped
            message = " ".join(lines[starts[-1] :])
        elif code is not None and code > 0 and lines:
            message = lines[-1]
        text = f"{how}: {message}" if message else how
        return replica.job.redact(text)[:_ERROR_CHARS]

    # -- the child's streams -----------------------------------------------------------

    async def _read_stderr(
        self, replica: ReplicaRecord, process: asyncio.subprocess.Process
    ) -> None:
        assert process.stderr is not None
        while True:
            try:
                line = await process.stderr.readline()
            except ValueError:  # a line over the stream limit: skipped
                continue
            if not line:
                return
            replica.stderr.append(line.decode(errors="replace").rstrip())

    async def _read_events(
        self, replica: ReplicaRecord, process: asyncio.subprocess.Process
    ) -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:
                continue
            if not line:
                return
            try:
                event = JobEvent.model_validate_json(line).root
            except ValidationError:
                if line.lstrip().startswith(b"{"):
                    logger.warning(
                        "unreadable event from a job",
                        job=replica.job.spec.name,
                        line=line[:200].decode(errors="replace"),
                    )
                continue  # not an event: something else printed on stdout
            self._on_event(replica, event)

    def _on_event(self, replica: ReplicaRecord, event: AnyJobEvent) -> None:
        if isinstance(event, JobStarted):
            replica.started_at = datetime.now(UTC)
            replica.started_mono = self._clock()
            if replica.state is _S.STARTING:
                self._set(replica, _S.RUNNING, "started")
            if replica.job.paused_by is not None:  # the job is paused: so is a new replica
                self._send(replica, ControlAction.PAUSE)
        elif isinstance(event, JobProgress):
            self._on_progress(replica, event)
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

    def _on_progress(self, replica: ReplicaRecord, event: JobProgress) -> None:
        nodes = {n: {"in": p.rows_in, "out": p.rows_out} for n, p in event.nodes.items()}
        emitted = sum(n["out"] for n in nodes.values() if not n["in"])
        now = self._clock()
        if replica.samples and emitted < replica.samples[-1][1]:
            replica.samples.clear()  # a reload restarted the counters
        replica.samples.append((now, emitted))
        (t0, n0), (t1, n1) = replica.samples[0], replica.samples[-1]
        replica.items_per_second = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        state = event.state
        seq = replica.progress.seq + 1 if replica.progress is not None else 1
        replica.progress = Progress(seq=seq, state=state, nodes=nodes, emitted=emitted)
        if replica.state in LIVE:
            if state == "paused":
                self._set(replica, _S.PAUSED, "paused")
            elif state == "running":
                self._set(replica, _S.RUNNING, "running")

    def _on_ack(self, replica: ReplicaRecord, event: JobControlAck) -> None:
        result = event.result
        _, ack = replica.acks.pop(str(event.id), (None, None))
        if ack is not None and not ack.done():
            ack.set_result(result)
        if result.ok and replica.state in LIVE:
            if result.action is ControlAction.PAUSE:
                self._set(replica, _S.PAUSED, "pause acknowledged")
            elif result.action is ControlAction.RESUME:
                self._set(replica, _S.RUNNING, "resume acknowledged")

    def _send(self, replica: ReplicaRecord, action: ControlAction) -> asyncio.Future[ControlResult]:
        """Write a command to the child; the future gets its acknowledgement."""
        ack: asyncio.Future[ControlResult] = asyncio.get_running_loop().create_future()
        process = replica.process
        if process is None or process.stdin is None or process.stdin.is_closing():
            ack.set_result(control_result(action, replica.job.spec.name, ControlStatus.FAILED,
                                   "the replica is not running"))  # fmt: skip
            return ack
        command_id = f"{replica.job.spec.name}.{replica.index}.{uuid4().hex[:12]}"
        replica.acks[command_id] = (action, ack)
        line = JobCommand(action=action, id=command_id).model_dump_json() + "\n"
        process.stdin.write(line.encode())
        return ack

    async def _command(self, replica: ReplicaRecord, action: ControlAction) -> ControlResult:
        name = replica.job.spec.name
        ack = self._send(replica, action)
        process = replica.process
        try:
            if process is not None and process.stdin is not None and not ack.done():
                await process.stdin.drain()
            return await asyncio.wait_for(asyncio.shield(ack), self.control_timeout)
        except (BrokenPipeError, ConnectionResetError):
            return control_result(
                action, name, ControlStatus.FAILED, "the replica's stdin is closed"
            )
        except TimeoutError:
            return control_result(action, name, ControlStatus.FAILED,
                           f"no acknowledgement within {self.control_timeout:g} s")  # fmt: skip

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
        done = await self._terminate(process, task, timeout)
        if not done:
            logger.warning("replica did not drain: killed", job=replica.job.spec.name,
                           replica=replica.index, timeout=timeout)  # fmt: skip
            replica.last_error = f"did not stop within {timeout:g} s: killed"
            kill_group(process)
            await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _terminate(
        self, process: asyncio.subprocess.Process, task: asyncio.Task[None], within: float
    ) -> bool:
        """SIGTERM the child until it exits or ``within`` seconds pass; whether it exited.

        The signal is repeated every second: a child that was reloading when the first one
        came may have started its next run instead of stopping.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while signal_process(process, signal.SIGTERM):
            left = deadline - loop.time()
            if left <= 0:
                return task.done()
            done, _ = await asyncio.wait({task}, timeout=min(_RESIGNAL_EVERY, left))
            if done:
                return True
        await asyncio.wait({task}, timeout=max(deadline - loop.time(), 0.1))
        return task.done()

    # -- schedules ---------------------------------------------------------------------

    async def _cron(self, job: JobRecord) -> None:
        expression = job.spec.schedule
        assert expression is not None
        last: datetime | None = None
        while True:
            now = datetime.now(UTC)
            base = max(now, last) if last is not None else now
            fire: datetime = croniter(expression, base).get_next(datetime)
            job.next_run = fire
            delay = (fire - datetime.now(UTC)).total_seconds()
            if delay > 0:
                await self._sleep(delay)
            last = fire
            if any(r.active for r in job.replicas):
                logger.info("scheduled run skipped: still running", job=job.spec.name)
                continue
            logger.info("scheduled run", job=job.spec.name, fire=fire.isoformat())
            await self.start(job.spec.name)

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


def _check_scale(name: str, spec: JobSpec, replicas: int) -> None:
    """``ValueError`` when the job cannot have ``replicas`` replicas."""
    if replicas < 1:
        raise ValueError(f"job {name}: replicas must be at least 1, got {replicas}")
    if replicas > spec.max_replicas:
        raise ValueError(
            f"job {name} allows at most {spec.max_replicas} replicas (max_replicas), got {replicas}"
        )
    if spec.partitions is not None and replicas > spec.partitions:
        raise ValueError(
            f"job {name} has {spec.partitions} partitions: at most {spec.partitions}"
            f" replicas (one per partition), got {replicas}"
        )
