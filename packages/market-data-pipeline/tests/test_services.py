"""Services: one in-process Store per database, wired to the job's controller, closed by
the last sink that releases it; the former dict form still accepted."""

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from market_data_core import BackpressureLevel
from market_data_core.testing import make_feedback_event
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.services import Services, database_key
from market_data_pipeline.testing import eventually
from market_data_store.coordinator import CoordinatorState


def test_the_former_dict_form_maps_to_fields_and_keeps_the_rest() -> None:
    losses: list[str] = []
    store = object()
    services = Services.of(
        {"store": store, "redis_url": "redis://x", "state_dir": "/s", "data_loss": losses, "k": 1}
    )
    assert (services.store, services.redis_url, services.state_dir) == (store, "redis://x", "/s")
    assert services.data_losses is losses
    assert services.extra == {"k": 1}
    assert Services.of(services) is services


def test_one_key_per_sqlite_file_however_it_is_spelled(tmp_path: Path) -> None:
    a = database_key(f"sqlite:///{tmp_path / 'md.db'}")
    assert a == database_key(f"sqlite:///{tmp_path / 'x' / '..' / 'md.db'}")
    assert a != database_key(f"sqlite:///{tmp_path / 'other.db'}")


@pytest.mark.asyncio
async def test_one_store_per_database_fed_to_the_controller_and_closed_by_the_last_user(
    tmp_path: Path,
) -> None:
    controller = BackpressureController("job")
    services = Services(feedback=controller, database=SecretStr("sqlite:///unused.db"))
    database = f"sqlite:///{tmp_path / 'own.db'}"
    first = await services.open_store(database)
    second = await services.open_store(f"sqlite:///{tmp_path / '.' / 'own.db'}")
    try:
        assert first is second
        assert services.publishers == [first.bus]  # rate adjustments reach its bus
        await first.bus.publish(make_feedback_event(level=BackpressureLevel.HARD))
        async with asyncio.timeout(30):
            await eventually(lambda: controller.paused)
        await services.release(first)
        assert first.coordinator.state is CoordinatorState.RUNNING  # still used by the other
    finally:
        await services.release(second)
    assert first.coordinator.state is not CoordinatorState.RUNNING
    assert services.publishers == []
    assert not (tmp_path.parent / "unused.db").exists()
