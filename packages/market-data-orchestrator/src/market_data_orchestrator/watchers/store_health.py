"""The store's health as the orchestrator sees it, and the orchestrator's own health.

``StoreHealthWatcher`` polls the store's ``/readyz`` (core ``HealthStatus``) and, when that
fails, its ``/healthz`` (liveness) to tell a dead process from a sick one. Every poll gives
a ``ProbeResult``: a timeout, a connection error, a non-JSON or off-schema body, an
unexpected HTTP status or a 503 counts as unhealthy, with the reason recorded.

The watcher's ``verdict`` changes with hysteresis, so one slow answer does not flap it: it
turns ``unhealthy`` after ``unhealthy_after`` consecutive unhealthy results and back to
``healthy`` after ``healthy_after`` consecutive healthy ones. ``on_unhealthy(reason)`` and
``on_healthy()`` fire exactly once per flip (the supervisor pauses and resumes the jobs that
write to the store there). The verdict starts unknown (``None``): reaching ``healthy`` from
unknown fires nothing (nothing was paused), reaching ``unhealthy`` from unknown fires
``on_unhealthy``.

``aggregate`` folds the store, every job and the feedback transport into the
orchestrator's own ``HealthStatus`` (worst-of; see ``market_data_core.health``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as _dist_version

import httpx
import structlog
from pydantic import ValidationError

from market_data_core import HealthComponent, HealthState, HealthStatus
from market_data_core.exceptions import ConfigurationError
from market_data_orchestrator.jobs import JobInfo, JobState
from market_data_orchestrator.watchers.polling import PollingWatcher

__all__ = [
    "ClientFactory",
    "ProbeResult",
    "StoreHealthWatcher",
    "aggregate",
    "job_component",
    "probe_liveness",
    "probe_readiness",
]

logger = structlog.get_logger(__name__)

ClientFactory = Callable[[], httpx.AsyncClient]
OnUnhealthy = Callable[[str], Awaitable[None] | None]
OnHealthy = Callable[[], Awaitable[None] | None]

_SERVICE = "market-data-orchestrator"
_JOB_STATES = {
    JobState.FAILED: HealthState.UNHEALTHY,
    JobState.PAUSED: HealthState.DEGRADED,
    JobState.STARTING: HealthState.DEGRADED,
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One poll of a peer: healthy or not, why not, and what it said."""

    healthy: bool
    reason: str | None = None
    status: HealthStatus | None = None
    http_status: int | None = None
    live: bool | None = None
    """The answer of ``/healthz`` when ``/readyz`` failed (``None``: not asked)."""
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


def _describe_error(exc: httpx.HTTPError, path: str, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout after {timeout:g}s on {path} ({type(exc).__name__})"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused on {path}"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return f"connection error on {path}: {exc}"
    return f"{type(exc).__name__} on {path}: {exc}"


def _parse_status(response: httpx.Response, path: str) -> ProbeResult:
    code = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ProbeResult(False, f"HTTP {code} with a non-JSON body on {path}", http_status=code)
    if code not in (200, 503):
        return ProbeResult(False, f"unexpected HTTP {code} on {path}", http_status=code)
    try:
        status = HealthStatus.model_validate(body)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "<body>" for err in exc.errors()})
        reason = f"off-schema HealthStatus on {path} (HTTP {code}): {', '.join(fields)[:200]}"
        return ProbeResult(False, reason, http_status=code)
    if code == 503 or status.state is HealthState.UNHEALTHY:
        sick = [c.name for c in status.components if c.state is HealthState.UNHEALTHY]
        what = f"components {', '.join(sick)} unhealthy" if sick else "state unhealthy"
        return ProbeResult(False, f"{status.service} unhealthy (HTTP {code}): {what}", status, code)
    return ProbeResult(True, None, status, code)


async def probe_readiness(
    client: httpx.AsyncClient, url: str, *, request_timeout: float, liveness: bool = True
) -> ProbeResult:
    """GET ``{url}/readyz`` and judge it; on failure also ask ``/healthz`` when ``liveness``."""
    base = url.rstrip("/")
    try:
        response = await client.get(f"{base}/readyz", timeout=request_timeout)
    except httpx.HTTPError as exc:
        result = ProbeResult(False, _describe_error(exc, "/readyz", request_timeout))
    else:
        result = _parse_status(response, "/readyz")
    if result.healthy or not liveness:
        return result
    live = await probe_liveness(client, base, request_timeout=request_timeout)
    return ProbeResult(False, result.reason, result.status, result.http_status, live, result.ts)


async def probe_liveness(client: httpx.AsyncClient, url: str, *, request_timeout: float) -> bool:
    """True when ``{url}/healthz`` answers 200."""
    try:
        response = await client.get(f"{url.rstrip('/')}/healthz", timeout=request_timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def _call(callback: Callable[..., Awaitable[None] | None], *args: str) -> None:
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("health callback failed", callback=getattr(callback, "__name__", "?"))


class StoreHealthWatcher(PollingWatcher):
    """Poll the store's health and decide, with hysteresis, whether it is usable.

    Drive it with ``await poll_once()`` (tests, a scheduler) or ``async with watcher:``,
    which polls every ``poll_interval`` seconds in a task of its own.
    """

    task_name = "store-health"

    def __init__(
        self,
        url: str,
        *,
        poll_interval: float = 2.0,
        timeout: float = 2.0,
        unhealthy_after: int = 3,
        healthy_after: int = 2,
        on_unhealthy: OnUnhealthy | None = None,
        on_healthy: OnHealthy | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        name: str = "store",
    ) -> None:
        if poll_interval <= 0 or timeout <= 0:
            msg = f"poll_interval and timeout must be > 0, got {poll_interval}, {timeout}"
            raise ConfigurationError(msg)
        if unhealthy_after < 1 or healthy_after < 1:
            msg = f"thresholds must be >= 1, got {unhealthy_after}, {healthy_after}"
            raise ConfigurationError(msg)
        self.url = url.rstrip("/")
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.unhealthy_after = unhealthy_after
        self.healthy_after = healthy_after
        self.on_unhealthy = on_unhealthy
        self.on_healthy = on_healthy
        self.name = name
        self._client_factory = client_factory or httpx.AsyncClient
        self._client: httpx.AsyncClient | None = None
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.verdict: HealthState | None = None
        """``healthy``, ``unhealthy``, or ``None`` before the first decision."""
        self.status: HealthStatus | None = None
        """The last ``HealthStatus`` the store answered with (kept while it is down)."""
        self.reason: str | None = None
        """Why the last result was unhealthy (``None`` after a healthy one)."""
        self.last_result: ProbeResult | None = None
        self.last_change_ts: datetime | None = None
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.polls = 0
        self.flips = 0
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every result (its verdict decided): a live view."""
        self._listeners.append(listener)

    @property
    def healthy(self) -> bool:
        """True only when the verdict is ``healthy``."""
        return self.verdict is HealthState.HEALTHY

    async def poll_once(self) -> ProbeResult:
        """Poll once, update the verdict and fire a callback when it flips."""
        async with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            result = await probe_readiness(self._client, self.url, request_timeout=self.timeout)
            await self.observe(result)
            return result

    async def observe(self, result: ProbeResult) -> None:
        """Apply one result to the hysteresis (``poll_once`` calls it)."""
        self.polls += 1
        self.last_result = result
        if result.status is not None:
            self.status = result.status
        if result.healthy:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.reason = None
            if self.verdict is not HealthState.HEALTHY and (
                self.consecutive_successes >= self.healthy_after
            ):
                await self._flip(HealthState.HEALTHY)
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.reason = result.reason or "unhealthy"
            if self.verdict is not HealthState.UNHEALTHY and (
                self.consecutive_failures >= self.unhealthy_after
            ):
                await self._flip(HealthState.UNHEALTHY)
        for listener in self._listeners:
            listener()

    async def _flip(self, verdict: HealthState) -> None:
        previous, self.verdict = self.verdict, verdict
        self.last_change_ts = self._clock()
        self.flips += 1
        logger.info("store verdict changed", url=self.url, verdict=verdict, reason=self.reason)
        if verdict is HealthState.UNHEALTHY and self.on_unhealthy is not None:
            await _call(self.on_unhealthy, self.reason or "unhealthy")
        elif verdict is HealthState.HEALTHY and previous is not None and self.on_healthy:
            await _call(self.on_healthy)

    def component(self) -> HealthComponent:
        """The store as a (required) component of the orchestrator's health.

        Unhealthy while the verdict is; degraded before the first verdict and while
        failures accumulate below the threshold; else the state the store reports."""
        if self.verdict is HealthState.UNHEALTHY:
            state = HealthState.UNHEALTHY
        elif self.verdict is None or self.consecutive_failures:
            state = HealthState.DEGRADED
        else:
            state = self.status.state if self.status is not None else HealthState.HEALTHY
        live = self.last_result.live if self.last_result is not None else None
        return HealthComponent(
            name=self.name,
            state=state,
            details={
                "url": self.url,
                "verdict": self.verdict.value if self.verdict is not None else "unknown",
                "reason": self.reason,
                "live": live,
                "consecutive_failures": self.consecutive_failures,
                "last_change": self.last_change_ts.isoformat() if self.last_change_ts else None,
            },
        )


def job_component(job: JobInfo) -> HealthComponent:
    """A job as a health component: failed -> unhealthy, paused/starting -> degraded."""
    return HealthComponent(
        name=f"job:{job.name}",
        state=_JOB_STATES.get(job.state, HealthState.HEALTHY),
        details={
            "state": job.state.value,
            "restarts": job.restarts,
            "last_error": job.last_error,
            "paused_by": job.paused_by,
        },
    )


def aggregate(
    service: str,
    components: Iterable[HealthComponent],
    jobs: Iterable[JobInfo] = (),
    *,
    version: str | None = None,
    ts: datetime | None = None,
) -> HealthStatus:
    """The orchestrator's ``HealthStatus``: worst-of over ``components`` (the store's
    ``component()``, the feedback watcher's) and one component per job."""
    parts = [*components, *(job_component(job) for job in jobs)]
    return HealthStatus.from_components(
        service, parts, version=version or _dist_version(_SERVICE), ts=ts
    )
