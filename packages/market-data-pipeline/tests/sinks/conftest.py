import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.components import Context, NodeStats
from market_data_pipeline.services import Services
from market_data_store.testing import StoreService


@pytest.fixture
def make_context() -> Callable[..., Context]:
    def make(node_id: str = "sink", *, services: dict[str, object] | None = None) -> Context:
        return Context(
            node_id=node_id,
            job="test",
            stats=NodeStats(),
            rate=BackpressureController.unlimited(),
            stopping=asyncio.Event(),
            services=Services.of(services),
        )

    return make


@pytest.fixture
def store_service(tmp_path: Path) -> Iterator[StoreService]:
    with StoreService(tmp_path) as service:
        yield service
