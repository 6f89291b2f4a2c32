"""Settings come from a file, then MDP_ variables, then flags (highest)."""

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from market_data_pipeline.settings import UnifiedRuntimeSettings


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(
        tmp_path,
        "nodes: []\nsettings:\n  channel_capacity: 3\n  soft_scale: 0.2\n  base_rate: 10\n",
    )
    monkeypatch.setenv("MDP_SOFT_SCALE", "0.3")
    monkeypatch.setenv("MDP_BASE_RATE", "20")
    settings = UnifiedRuntimeSettings.load(path, base_rate=30.0, metrics_port=None)
    assert settings.channel_capacity == 3  # from the file only
    assert settings.soft_scale == 0.3  # env beats the file
    assert settings.base_rate == 30.0  # the flag beats env and file
    assert settings.metrics_port is None  # an absent flag does not override
    assert settings.config == path  # a file with a graph is the config too


def test_a_plain_settings_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "channel_capacity: 7\nconfig: other.yaml\n")
    settings = UnifiedRuntimeSettings.load(path)
    assert settings.channel_capacity == 7
    assert settings.config == Path("other.yaml")


def test_unknown_and_invalid_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="chanel_capacity"):
        UnifiedRuntimeSettings.load(_file(tmp_path, "chanel_capacity: 7\n"))
    with pytest.raises(ValidationError, match="soft_scale"):
        UnifiedRuntimeSettings.load(None, soft_scale=2.0)


def test_secrets_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDP_DATABASE_URL", "postgresql://app:hunter2@db/md")
    settings = UnifiedRuntimeSettings.load(None, redis_url=SecretStr("redis://:hunter3@r:6379"))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert "hunter3" not in repr(settings)
    assert settings.database_url.get_secret_value().endswith("@db/md")


def test_the_drain_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert UnifiedRuntimeSettings.load(None).drain_timeout == 5.0
    monkeypatch.setenv("MDP_DRAIN_TIMEOUT", "2.5")
    assert UnifiedRuntimeSettings.load(None).drain_timeout == 2.5
    assert UnifiedRuntimeSettings.load(None, drain_timeout=1.0).drain_timeout == 1.0
    with pytest.raises(ValidationError, match="drain_timeout"):
        UnifiedRuntimeSettings.load(None, drain_timeout=0.0)
