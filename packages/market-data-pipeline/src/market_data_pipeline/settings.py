"""``UnifiedRuntimeSettings``: the runtime's settings from files, ``MDP_`` variables and flags.

Precedence, lowest to highest: defaults < a settings file (YAML/JSON: its ``settings:``
mapping, or the whole file when it has no graph in it) < ``MDP_*`` environment variables <
explicit values (CLI flags, keyword arguments). Secrets (``database_url``, ``redis_url``)
are ``SecretStr``: never printed, logged or put in metrics.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import yaml_error

__all__ = ["UnifiedRuntimeSettings"]

_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("mdp_settings_file", default=None)
_GRAPH_KEYS = {"nodes", "edges", "source", "sink", "operators", "pipeline"}


class UnifiedRuntimeSettings(BaseSettings):
    """How jobs run: which store, which feedback, channel sizes, metrics and logs."""

    model_config = SettingsConfigDict(env_prefix="MDP_", extra="forbid", frozen=True)

    config: Path | None = Field(
        default=None, description="The pipeline config (YAML/JSON: a DAG or a classic spec)."
    )
    mode: Literal["auto", "dag", "classic"] = Field(
        default="auto", description="Require this mode of config; auto accepts either."
    )
    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///./market_data.db"),
        description="The store that `store` sinks without their own `database`/`url` write to.",
    )
    channel_capacity: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=16, description="Batches each channel between nodes holds before it blocks."
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description=(
            "Redis: feedback from the store over Redis streams (and publish rates), and the"
            " server of redis_stream nodes that name no url of their own."
        ),
    )
    feedback_stream: str = Field(default="md:feedback", description="The Redis feedback stream.")
    store_feedback_url: str | None = Field(
        default=None,
        description="Base URL of a store service whose SSE feedback feed to follow.",
    )
    coordinator_id: str | None = Field(
        default=None, description="Follow this write coordinator only (default: any)."
    )
    soft_scale: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5, description="Fraction of the full rate under soft backpressure."
    )
    base_rate: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Records/s each provider may emit at full rate (none: unlimited)."
    )
    drain_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        default=5.0,
        description=(
            "Seconds a stop (SIGTERM, Ctrl-C, a reload) may take to drain what is in flight"
            " into the sinks and the store; then the rest is abandoned and reported."
        ),
    )
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        default=None, description="Serve Prometheus metrics on this port (none: not served)."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the metrics server binds (0.0.0.0 for a scraper in a container).",
    )
    state_dir: Path = Field(
        default=Path(".mdp-state"),
        description=(
            "Local state of the job, kept outside Redis: where redis_stream providers note"
            " what Redis held, to find entries Redis lost (a persistent volume in production)."
        ),
    )
    partitions: Annotated[tuple[Annotated[int, Field(ge=0)], ...] | None, NoDecode] = Field(
        default=None,
        description=(
            "Partitions this worker owns (`0,3`): one copy of the graph runs per partition,"
            " with `{partition}` in its params replaced (a supervisor assigns them)."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level of log records written."
    )
    log_json: bool | None = Field(default=None, description="JSON logs (default: when not a TTY).")

    @field_validator("partitions", mode="before")
    @classmethod
    def _partition_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # MDP_PARTITIONS=0,3 or --partitions 0,3
            parts = [part.strip() for part in value.split(",")]
            if not value.strip():
                return None
            try:
                return tuple(int(part) for part in parts)
            except ValueError:
                msg = f"partitions are comma-separated numbers (0,3), got {value!r}"
                raise ValueError(msg) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = _FILE_VALUES.get() or {}
        return init_settings, env_settings, InitSettingsSource(settings_cls, file_values)

    @classmethod
    def load(cls, file: str | Path | None = None, **flags: Any) -> UnifiedRuntimeSettings:
        """Settings from ``file`` (lowest), the environment, then ``flags`` (highest).

        ``None`` flags are ignored (a CLI option that was not given).
        """
        values = _read(Path(file)) if file is not None else {}
        if file is not None and values.get("config") is None and _has_graph(Path(file)):
            values["config"] = str(file)
        token = _FILE_VALUES.set(values)
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        finally:
            _FILE_VALUES.reset(token)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GraphError(f"cannot read the settings: {error.strerror}", source=str(path)) from None
    except yaml.YAMLError as error:
        raise yaml_error(error, str(path)) from None


def _has_graph(path: Path) -> bool:
    data = _load_yaml(path)
    return isinstance(data, dict) and bool(_GRAPH_KEYS & set(data))


def _read(path: Path) -> dict[str, Any]:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise GraphError("a settings file must be a mapping", source=str(path))
    if isinstance(data.get("settings"), dict):
        return dict(data["settings"])
    if _GRAPH_KEYS & set(data):
        return {}
    return dict(data)
