"""A deployment: the YAML file that says which pipeline jobs the orchestrator runs, and how.

One file describes the whole control plane: the ``jobs`` (each a pipeline config as
``mdp run`` takes it, with replicas, restart policy and an optional cron schedule), the
``store`` it watches, the ``feedback`` transport, federation ``peers``, API ``security``,
the ``audit`` log and the HTTP ``service``. Unknown keys are rejected everywhere.

Relative paths (a job's ``config`` and ``cwd``, the audit ``path``) are resolved against the
directory of the deployment file by ``load_deployment``; a job's child runs in that
directory unless the job sets its own ``cwd``. A job's ``env`` values are ``SecretStr``: they
may hold passwords (``MDP_DATABASE_URL``) and never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from market_data_core.federation import NodeRole
from market_data_orchestrator.exceptions import DeploymentError

__all__ = [
    "AuditSettings",
    "Deployment",
    "DeploymentError",
    "FeedbackSettings",
    "JobSpec",
    "PeerSpec",
    "RestartPolicy",
    "RestartPolicyName",
    "Role",
    "SecuritySettings",
    "ServiceSettings",
    "StoreSettings",
    "TokenSpec",
    "load_deployment",
]

JobName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]
"""A job's name: letters, digits, ``_``, ``.``, ``-`` (it appears in URLs and metrics)."""

Name = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
]

_BASE_DIR = "base_dir"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get(_BASE_DIR)
    if value is None or base is None or value.is_absolute():
        return value
    return (Path(base) / value).resolve()


class RestartPolicyName(StrEnum):
    ALWAYS = "always"
    """Restart whenever a replica exits without being asked to stop."""
    ON_FAILURE = "on-failure"
    """Restart only after a non-zero exit (a job that completes stays completed)."""
    NEVER = "never"


class RestartPolicy(_Model):
    """When and how fast a job's replicas are restarted; when to give up (a crash loop)."""

    policy: RestartPolicyName = Field(
        default=RestartPolicyName.ON_FAILURE,
        description="always, on-failure (a job that completes stays completed) or never.",
    )
    backoff_initial: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="Seconds before the first restart."
    )
    backoff_max: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Cap of the restart delay, which doubles at each restart (with jitter).",
    )
    crash_loop_limit: int = Field(
        default=5, ge=0, description="Restarts allowed per window; one more fails the job."
    )
    crash_loop_window: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds of the sliding window the restarts are counted in.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> RestartPolicy:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) is below backoff_initial"
                f" ({self.backoff_initial})"
            )
        return self


class JobSpec(_Model):
    """One supervised pipeline job: ``replicas`` child processes of ``mdp run CONFIG``."""

    name: JobName = Field(description="Letters, digits, `_`, `.`, `-` (in URLs and metrics).")
    config: Path = Field(description="An `mdp run` config (relative to the deployment file).")
    replicas: int = Field(default=1, ge=1, description="Child processes of `mdp run` to keep.")
    max_replicas: int = Field(
        default=8,
        ge=1,
        description="The most replicas `mdo scale` may ask for (each is a process).",
    )
    partitions: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Partitions of the job's input (its config holds `{partition}`, e.g. stream"
            " `ticks:{partition}`): replica i of R owns the partitions p with p % R == i"
            " (`mdp run --partitions`); replicas <= partitions."
        ),
    )
    restart: RestartPolicy = Field(
        default_factory=RestartPolicy, description="Restart policy, backoff, crash-loop limit."
    )
    schedule: str | None = Field(
        default=None, description="Cron expression: start the job at each fire time."
    )
    writes_to_store: bool = Field(
        default=True, description="Paused while the store is unhealthy, resumed after."
    )
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra environment of the children (secret: never logged), e.g. MDP_*.",
    )
    cwd: Path | None = Field(
        default=None, description="Working directory of the children (default: the file's)."
    )
    stop_timeout: float = Field(
        default=15.0,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Seconds a replica may take to exit after SIGTERM before it is killed: keep it"
            " above the job's drain timeout (MDP_DRAIN_TIMEOUT, default 5) plus a few seconds."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _default_cwd(cls, data: Any, info: ValidationInfo) -> Any:
        base = (info.context or {}).get(_BASE_DIR)
        if isinstance(data, dict) and data.get("cwd") is None and base is not None:
            return {**data, "cwd": base}
        return data

    @model_validator(mode="after")
    def _replicas_within_partitions(self) -> JobSpec:
        if self.replicas > self.max_replicas:
            msg = f"replicas ({self.replicas}) must not exceed max_replicas ({self.max_replicas})"
            raise ValueError(msg)
        if self.partitions is not None and self.replicas > self.partitions:
            msg = (
                f"replicas ({self.replicas}) must not exceed partitions ({self.partitions}):"
                " a replica without a partition would have nothing to read"
            )
            raise ValueError(msg)
        return self

    def partitions_of(self, index: int) -> list[int] | None:
        """The partitions replica ``index`` owns (None: the job is not partitioned)."""
        if self.partitions is None:
            return None
        return [p for p in range(self.partitions) if p % self.replicas == index]

    @field_validator("config", "cwd")
    @classmethod
    def _relative_to_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): v if isinstance(v, str | SecretStr) or v is None else str(v)
                for k, v in value.items()
            }
        return value

    def environment(self) -> dict[str, str]:
        """The extra environment of the child, revealed (never log it)."""
        return {key: value.get_secret_value() for key, value in self.env.items()}


class StoreSettings(_Model):
    """The store service the orchestrator watches (``url`` None: no store to watch)."""

    url: str | None = Field(
        default=None, description="Base URL of the store service (unset: no store watched)."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="Seconds between /readyz polls."
    )
    timeout: float = Field(
        default=2.0, gt=0, allow_inf_nan=False, description="Seconds a poll may take."
    )
    unhealthy_after: int = Field(
        default=3, ge=1, description="Consecutive bad results before the store is unhealthy."
    )
    healthy_after: int = Field(
        default=2, ge=1, description="Consecutive good results before it is healthy again."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)


class FeedbackSettings(_Model):
    """The feedback transport: the store's Redis stream or its service's own SSE stream."""

    # Neither set: no feedback is followed (the status page and `mdo status` say so).

    redis_url: SecretStr | None = Field(
        default=None,
        description="Follow feedback on Redis streams (the store's `MDS_REDIS_URL`).",
    )
    stream: str = Field(
        default="md:feedback", min_length=1, description="The Redis feedback stream."
    )
    store_url: str | None = Field(
        default=None,
        description=(
            "Follow a store service's `GET /v1/feedback/stream` (server-sent events) at this"
            " base URL: no Redis needed (one orchestrator, one store)."
        ),
    )

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @model_validator(mode="after")
    def _one_transport(self) -> FeedbackSettings:
        if self.redis_url is not None and self.store_url is not None:
            raise ValueError("set redis_url or store_url, not both: one feedback transport")
        return self


class PeerSpec(_Model):
    """Another node of the federation, with the base URL of its health endpoints."""

    node_id: Name = Field(description="The peer's unique node id.")
    role: NodeRole = Field(description="orchestrator, pipeline or store.")
    url: str = Field(description="Base URL of its /healthz and /readyz.")
    region: Name | None = Field(default=None, description="Its region, if any.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value) or value


class Role(StrEnum):
    """API roles, ordered: viewer < operator < admin."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        return _ROLE_LEVELS[self]

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may."""
        return self.level >= required.level


_ROLE_LEVELS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class TokenSpec(_Model):
    """A bearer token, stored as the hex SHA-256 of the token (never the token itself)."""

    name: Name = Field(description="Who the token belongs to (the audit log's actor).")
    role: Role = Field(description="viewer < operator < admin.")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)] = Field(
        description="Hex SHA-256 of the token (`python -m market_data_orchestrator.security`)."
    )


class SecuritySettings(_Model):
    """Who may call the /v1 API (bearer tokens and their roles) and how often."""

    tokens: list[TokenSpec] = Field(
        default_factory=list, description="Bearer tokens of the /v1 API (none: /v1 answers 401)."
    )
    control_rate_per_minute: int = Field(
        default=30, ge=1, description="Control calls each caller may make per minute (429)."
    )
    unauthenticated_rate_per_minute: int = Field(
        default=30,
        ge=1,
        description="Refused (401) calls each client address may make per minute; then 429.",
    )
    unauthenticated_burst: int = Field(
        default=10, ge=1, description="Refused (401) calls a client address may make at once."
    )

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: list[TokenSpec]) -> list[TokenSpec]:
        _no_duplicates([t.name for t in tokens], "token name")
        return tokens


class AuditSettings(_Model):
    """Where the audit log of every control action (allowed or denied) is appended."""

    path: Path = Field(
        default=Path("orchestrator-audit.jsonl"),
        description="Append-only JSON-lines audit log (relative to the deployment file).",
    )

    @field_validator("path")
    @classmethod
    def _relative_to_file(cls, value: Path, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)


class ServiceSettings(_Model):
    """The HTTP API of `mdo serve` (health, metrics, jobs, control, audit)."""

    host: str = Field(
        default="127.0.0.1", min_length=1, description="Address of the API (`--host` wins)."
    )
    port: int = Field(default=8090, ge=0, le=65535, description="Port of the API (`--port` wins).")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description=(
            "Reverse proxies (addresses or networks) whose X-Forwarded-For and"
            " X-Forwarded-Proto are believed; none by default: the client address (audit,"
            " rate limits) is the connection's peer."
        ),
    )


class Deployment(_Model):
    """Everything the orchestrator runs and watches."""

    jobs: list[JobSpec] = Field(default_factory=list)
    store: StoreSettings = Field(default_factory=StoreSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    peers: list[PeerSpec] = Field(default_factory=list)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @field_validator("jobs")
    @classmethod
    def _unique_jobs(cls, jobs: list[JobSpec]) -> list[JobSpec]:
        _no_duplicates([j.name for j in jobs], "job name")
        return jobs

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, peers: list[PeerSpec]) -> list[PeerSpec]:
        _no_duplicates([p.node_id for p in peers], "peer node_id")
        return peers

    def job(self, name: str) -> JobSpec:
        """The job called ``name``; ``KeyError`` if there is none."""
        for spec in self.jobs:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


def load_deployment(path: str | Path) -> Deployment:
    """Read and validate a deployment file; ``DeploymentError`` names file, line and field.

    Job configs must exist (checked here, so a typo fails at load rather than at the first
    start of the job).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DeploymentError(f"{path}: cannot read the deployment: {error.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DeploymentError(f"{where}: invalid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DeploymentError(f"{path}: a deployment is a mapping with a 'jobs' list")
    context = {_BASE_DIR: path.resolve().parent}
    try:
        deployment = Deployment.model_validate(data, context=context)
    except ValidationError as error:
        problems = [_describe(path, root, e) for e in error.errors()]
        raise DeploymentError("invalid deployment:\n  " + "\n  ".join(problems)) from None
    for index, spec in enumerate(deployment.jobs):
        if not spec.config.is_file():
            line = _line_of(root, ("jobs", index, "config"))
            where = f"{path}:{line}" if line else str(path)
            raise DeploymentError(
                f"{where}: jobs.{index}.config: no such pipeline config {str(spec.config)!r}"
            )
    return deployment


def _describe(path: Path, root: yaml.Node | None, error: Any) -> str:
    loc = tuple(error["loc"])
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    field = ".".join(str(part) for part in loc) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{where}: {field}: {message}"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value if isinstance(value, yaml.CollectionNode) else key
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part >= 0:
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
