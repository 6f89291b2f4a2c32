"""What the nodes of a job share: the typed services object every ``Context`` carries.

:class:`Services` holds the runtime's settings a node may fall back on (``redis_url``,
``state_dir``), the list the sources append data losses to, and the job's in-process
stores: **one** ``Store`` per database, keyed by its normalized URL (an SQLite file by its
resolved path). A ``store`` sink asks :meth:`Services.open_store` for its database: the
first asks opens (and migrates) it, later ones share it, and the last to
:meth:`~Services.release` it drains and stops it. Each store opened here is wired to the
job's ``feedback`` controller (its bus feeds the controller, the controller's rate
adjustments go to its bus), so a sink naming its own database slows and pauses the job
like the job's own store.

A ``Store`` given by the caller (``services={"store": store}`` or ``Services(store=...)``)
is written to by every in-process store sink and is never stopped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

if TYPE_CHECKING:
    from market_data_core.transports.fanout import Publishes
    from market_data_pipeline.backpressure.controller import BackpressureController
    from market_data_pipeline.backpressure.links import BusFeedbackLink
    from market_data_store.store import Store

__all__ = [
    "DATA_LOSS_SERVICE",
    "REDIS_URL_SERVICE",
    "STATE_DIR_SERVICE",
    "STORE_SERVICE",
    "Services",
    "database_key",
]

REDIS_URL_SERVICE: Final = "redis_url"
"""The key of ``MDP_REDIS_URL`` (a ``SecretStr``) in the former ``dict`` form."""
STATE_DIR_SERVICE: Final = "state_dir"
"""The key of ``MDP_STATE_DIR`` (a path) in the former ``dict`` form."""
DATA_LOSS_SERVICE: Final = "data_loss"
"""The key of the data-loss list in the former ``dict`` form."""
STORE_SERVICE: Final = "store"
"""The key of a caller's ``Store`` in the former ``dict`` form."""


@dataclass(slots=True)
class _Held:
    """A store opened here: how many sinks use it and the link feeding its feedback."""

    store: Store
    users: int
    owned: bool
    link: BusFeedbackLink | None = None


@dataclass(slots=True)
class Services:
    """The shared objects of one job (see the module docstring)."""

    store: Store | None = None
    """A store given by the caller: every in-process ``store`` sink writes to it."""
    database: SecretStr | None = None
    """The job's database: where a ``store`` sink naming none writes."""
    redis_url: SecretStr | str | None = None
    """``MDP_REDIS_URL``: the Redis of ``redis_stream`` nodes without a ``url``."""
    state_dir: Path | str | None = None
    """``MDP_STATE_DIR``: where ``redis_stream`` providers keep their state."""
    data_losses: list[str] = field(default_factory=list)
    """Data the sources found lost upstream (each appends a message)."""
    feedback: BackpressureController | None = None
    """The job's rate controller: every store opened here feeds it."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else a caller shares with its own components, by name."""
    publishers: list[Publishes] = field(default_factory=list)
    """Where the controller's rate adjustments go (the job's fan-out keeps this list):
    each store opened here adds its bus."""
    _stores: dict[str, _Held] = field(default_factory=dict)

    @classmethod
    def of(cls, given: Services | Mapping[str, Any] | None) -> Services:
        """``given`` itself, or a ``Services`` from the former ``dict`` form (keys
        ``store``, ``redis_url``, ``state_dir``, ``data_loss``; any other goes to
        ``extra``)."""
        if isinstance(given, Services):
            return given
        values = dict(given or {})
        return cls(
            store=values.pop(STORE_SERVICE, None),
            redis_url=values.pop(REDIS_URL_SERVICE, None),
            state_dir=values.pop(STATE_DIR_SERVICE, None),
            data_losses=values.pop(DATA_LOSS_SERVICE, []),
            extra=values,
        )

    def adopt(self, database: str, store: Store) -> None:
        """Share ``store`` (opened, fed and closed by its owner, the job) with the sinks
        that name ``database``."""
        self._stores[database_key(database)] = _Held(store, users=0, owned=False)

    async def open_store(
        self, database: str, *, migrate: bool = True, dead_letter_path: str | None = None
    ) -> Store:
        """The job's store on ``database``: opened (and wired to ``feedback``) by the
        first caller, shared with later ones. Each caller :meth:`release`s it."""
        key = database_key(database)
        held = self._stores.get(key)
        if held is None:
            store = _new_store(database, dead_letter_path)
            await store.start(migrate=migrate)
            held = self._stores[key] = _Held(store, users=0, owned=True)
            await self._wire(held)
        held.users += 1
        return held.store

    async def release(self, store: Store) -> None:
        """A sink is done with ``store``: the last one stops a store opened here (draining
        what it accepted); adopted stores are left to their owner."""
        for key, held in list(self._stores.items()):
            if held.store is not store or not held.owned:
                continue
            held.users -= 1
            if held.users <= 0:
                del self._stores[key]
                await self._close(held)

    async def aclose(self) -> None:
        """Stop every store opened here that a sink did not release."""
        owned = [held for held in self._stores.values() if held.owned]
        self._stores = {k: h for k, h in self._stores.items() if not h.owned}
        for held in owned:
            await self._close(held)

    async def _wire(self, held: _Held) -> None:
        """Feed the job's controller from the store's bus and publish adjustments to it."""
        if self.feedback is None:
            return
        from market_data_pipeline.backpressure.links import BusFeedbackLink  # noqa: PLC0415

        held.link = BusFeedbackLink(held.store.bus, self.feedback)
        await held.link.start()
        self.publishers.append(held.store.bus)

    async def _close(self, held: _Held) -> None:
        if held.link is not None:
            await held.link.stop()
            if held.store.bus in self.publishers:
                self.publishers.remove(held.store.bus)
        await held.store.stop(drain=True)


def database_key(database: str) -> str:
    """One name per database: an SQLite file by its resolved path, else the URL."""
    from market_data_store.dsn import DatabaseUrl  # noqa: PLC0415

    url = DatabaseUrl.parse(database)
    if url.is_sqlite:
        return f"sqlite:{url.sqlite_path().resolve()}"
    return url.secret()


def _new_store(database: str, dead_letter_path: str | None) -> Store:
    """A ``Store`` on ``database``; its dead letters next to an SQLite file by default."""
    from market_data_store.dsn import DatabaseUrl  # noqa: PLC0415
    from market_data_store.settings import StoreSettings  # noqa: PLC0415
    from market_data_store.store import Store  # noqa: PLC0415

    extra: dict[str, Any] = {}
    url = DatabaseUrl.parse(database)
    if dead_letter_path is not None:
        extra["dead_letter_path"] = dead_letter_path
    elif url.is_sqlite:
        extra["dead_letter_path"] = str(url.sqlite_path().with_suffix(".dlq.ndjson"))
    return Store(StoreSettings(database_url=SecretStr(database), **extra))
