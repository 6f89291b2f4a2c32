"""Settings of the store: environment variables with the ``MDS_`` prefix (and a ``.env``).

Secrets (the admin token, a DSN with a password, a Redis URL with a password) are
``SecretStr``: they print as ``**********`` and never reach logs, errors or metrics.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from market_data_store.dsn import DatabaseUrl

__all__ = ["StoreSettings"]

_Fraction = Annotated[float, Field(gt=0, le=1)]
_MIN_TOKEN_CHARS = 16


_Interval = Annotated[
    str,
    StringConstraints(
        pattern=r"^[1-9][0-9]{0,5} (second|minute|hour|day|week|month|year)s?$", max_length=32
    ),
]
"""A PostgreSQL interval such as ``1 day`` or ``12 hours`` (validated: it goes into SQL)."""


class StoreSettings(BaseSettings):
    """Everything the store service, CLI and in-process ``Store`` need."""

    model_config = SettingsConfigDict(
        env_prefix="MDS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///./market_data.db"),
        description=(
            "sqlite:///path or postgresql://user:pw@host:port/db; default: the SQLite file "
            "./market_data.db (embedded, no server)."
        ),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token of the admin routes (at least 16 characters); unset or empty"
            " disables them."
        ),
    )
    admin_refusals_per_minute: Annotated[float, Field(gt=0, le=60_000)] = Field(
        default=10,
        description=(
            "Refused (401) admin calls each client address may make a minute (burst"
            " admin_refusals_burst); then 429. Of a burst of refusals only the first is"
            " audited, the client's next audit record counts the others."
        ),
    )
    admin_refusals_burst: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=10, description="Refused (401) admin calls a client address may make at once."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Publish feedback on Redis streams (else in memory)."
    )
    feedback_stream: str = Field(
        default="md:feedback", description="The Redis stream feedback events are published on."
    )
    coordinator_id: str = Field(
        default="store",
        description="Names this store's write coordinator in its feedback events.",
    )

    queue_capacity: Annotated[int, Field(ge=1)] = Field(
        default=100_000, description="Records the write queue holds; utilization is size/capacity."
    )
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=2, description="Write workers (concurrent batch writes to the database)."
    )
    batch_size: Annotated[int, Field(ge=1)] = Field(
        default=20_000, description="Records a worker takes from the queue per database write."
    )
    flush_interval: Annotated[float, Field(gt=0)] = Field(
        default=0.2,
        description="Seconds a worker waits for a full batch before writing a partial one.",
    )
    high_watermark: _Fraction = Field(
        default=0.8, description="Queue utilization at which backpressure turns hard."
    )
    soft_watermark: _Fraction = Field(
        default=0.5, description="Queue utilization at which backpressure turns soft."
    )
    low_watermark: _Fraction = Field(
        default=0.3,
        description="Hard backpressure ends when utilization falls to this (hysteresis).",
    )
    overflow: Literal["block", "drop_oldest", "error"] = Field(
        default="block",
        description=(
            "A full queue: 'block' waits for space, 'drop_oldest' evicts (counted), "
            "'error' refuses the batch."
        ),
    )
    heartbeat_interval: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="Seconds between feedback heartbeats (the latest level again)."
    )
    breaker_threshold: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5,
        description="Consecutive failed batch writes that open the circuit breaker.",
    )
    breaker_reset_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description=(
            "Longest an open circuit breaker waits before a trial write; a database check"
            " that succeeds (every `health_interval`) admits one sooner."
        ),
    )
    drain_timeout: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=15.0,
        description=(
            "Seconds a stop (SIGTERM) lets the write queue drain; what is still queued or"
            " held then goes to the dead-letter file, so a stop ends even while the database"
            " is down."
        ),
    )
    retry_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5,
        description=(
            "Attempts of a batch write in one round on transient errors (then `on_outage`)."
        ),
    )
    on_outage: Literal["hold", "dead_letter"] = Field(
        default="hold",
        description=(
            "When a round of attempts runs out on transient errors (the database is down):"
            " 'hold' keeps the batch and retries it whenever the circuit breaker admits"
            " writes again, so an outage delays writes but dead-letters nothing (on stop it"
            " is dead-lettered); 'dead_letter' sends it to the dead-letter file at once."
        ),
    )
    dead_letter_path: str = Field(
        default="./market_data.dlq.ndjson",
        description="NDJSON file of batches that could not be written (`mds dlq replay`).",
    )
    ack: Literal["durable", "queued"] = Field(
        default="durable",
        description=(
            "When ingest answers 202: 'durable' once the batch is in the database (or the "
            "dead-letter file), so a crash of the service loses nothing acknowledged; "
            "'queued' as soon as it is in the write queue (faster, lost if the process dies)."
        ),
    )

    history_retention_days: Annotated[float, Field(ge=0, le=36500)] = Field(
        default=30.0,
        description=(
            "How long (days) replaced versions stay readable 'as known at' a time and in "
            "the revisions; 0 keeps none. Purged hourly by the running store."
        ),
    )
    timescale_chunk_interval: _Interval = Field(
        default="1 day", description="TimescaleDB (when installed): chunk size of hypertables."
    )
    timescale_compress_after: _Interval | None = Field(
        default="7 days", description="TimescaleDB: compress chunks older than this (unset: off)."
    )
    timescale_retention: _Interval | None = Field(
        default=None, description="TimescaleDB: drop chunks older than this (unset: keep all)."
    )

    host: str = Field(
        default="127.0.0.1", description="Address `mds serve` binds (0.0.0.0 in a container)."
    )
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8080, description="Port of `mds serve`."
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description=(
            "Reverse proxies (addresses or networks, a JSON list) whose X-Forwarded-For and"
            " X-Forwarded-Proto are believed; none by default: the client address in the"
            " access log is the connection's peer."
        ),
    )
    max_batch: Annotated[int, Field(ge=1)] = Field(
        default=10_000, description="Most records one ingest request may carry (else 413)."
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=16 * 1024 * 1024, description="Largest ingest request body in bytes (else 413)."
    )
    max_decoded_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=64 * 1024 * 1024,
        description=(
            "Largest size one Arrow ingest body may decode to, in bytes (else 413, nothing"
            " decoded): its buffers uncompressed, read from its metadata before decoding."
        ),
    )
    max_decoding_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=256 * 1024 * 1024,
        description=(
            "Bytes of ingest bodies being decoded at once, all requests together (Arrow:"
            " uncompressed; JSON: four times its length); past it ingest answers 503 with"
            " Retry-After (a body alone is always decoded)."
        ),
    )
    request_head_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0,
        description=(
            "Seconds a request's line and headers may take to arrive (from its first byte);"
            " else 408 and the connection is closed."
        ),
    )
    request_body_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description=(
            "Seconds a request's body may take to arrive after its headers; else 408 and the"
            " connection is closed (a client that declares more than it sends holds nothing)."
        ),
    )
    max_request_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=1024 * 1024,
        description="Largest request body of every other route, in bytes (else 413).",
    )
    health_interval: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0,
        description=(
            "Seconds between the background checks of the database that /readyz reports"
            " (/readyz itself never waits for the database)."
        ),
    )
    log_json: bool | None = Field(default=None, description="JSON logs (default: when no TTY)")

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_off(cls, value: object) -> object:
        """``MDS_ADMIN_TOKEN=""`` (set but empty, or blank) means off, never "any token"."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < _MIN_TOKEN_CHARS:
            msg = f"admin_token must be at least {_MIN_TOKEN_CHARS} characters (or unset)"
            raise ValueError(msg)
        return value

    @field_validator("database_url")
    @classmethod
    def _parseable(cls, value: SecretStr) -> SecretStr:
        DatabaseUrl.parse(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _ordered_watermarks(self) -> StoreSettings:
        if not self.low_watermark < self.soft_watermark <= self.high_watermark:
            msg = (
                "watermarks must satisfy low < soft <= high, got "
                f"low={self.low_watermark} soft={self.soft_watermark} high={self.high_watermark}"
            )
            raise ValueError(msg)
        if self.max_decoding_bytes < self.max_decoded_bytes:
            msg = (
                "max_decoding_bytes (all requests) must be at least max_decoded_bytes (one"
                f" request), got {self.max_decoding_bytes} < {self.max_decoded_bytes}"
            )
            raise ValueError(msg)
        return self

    @property
    def database(self) -> DatabaseUrl:
        return DatabaseUrl.parse(self.database_url.get_secret_value())
