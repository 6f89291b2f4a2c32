"""Write batches into the market-data store: in process (no server) or over HTTP.

- In process (the default): a ``Store`` given as ``services.store`` when there is one (its
  owner starts and stops it), else the job's store on ``database`` (the job's database
  when the node names none; SQLite file by default, or PostgreSQL) from
  :meth:`Services.open_store <market_data_pipeline.services.Services.open_store>`: one
  store per database, migrated when first opened, drained when the last sink using it
  closes, and wired to the job's backpressure controller, so its feedback slows and
  pauses the job. ``self.store`` is that ``Store``.
- Over HTTP (``url`` set): the store service's ``AsyncStoreClient``, which retries 429/503
  and connection errors with the same idempotency key; the node counts ``retries`` and the
  rows the service ``acknowledged`` (answered 2xx for). Up to ``http_concurrency`` requests
  are in flight at once (the service writes with two workers by default: one request at a
  time, each waiting for its durable acknowledgement, left one of them idle); a request
  that fails for good fails the node at the next write or at ``flush``, which waits for
  every request in flight.

Batches go to the store as Arrow tables, never a model per row: in process through
``Store.submit_arrow``, over HTTP as Arrow IPC streams (``AsyncStoreClient.write_arrow``);
the store checks them per column and PostgreSQL takes them by binary COPY. They are
versions of their keys (``as_of``, ``revision``: see docs/store.md): the store keeps the
newest, so replaying the same data twice changes nothing. ``reason`` fills the batches'
empty ``reason`` (why these versions were written: ``backfill``, ``correction``...).
``flush`` (end of input) waits until everything is settled. In process, rows the store
could not write (dead-lettered, refused by the database) are counted in ``not_stored`` and
logged, so a run's summary never passes them off as written.
Needs the ``store`` extra (``pip install 'market-data-pipeline[store]'``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pydantic import Field, SecretStr

from market_data_core import Reason
from market_data_pipeline import records
from market_data_pipeline.components import Context, Params, SinkComponent

if TYPE_CHECKING:
    from market_data_store.client import AsyncStoreClient
    from market_data_store.receipts import WriteReceipt
    from market_data_store.store import Store

__all__ = ["StoreSink", "StoreSinkParams"]

logger = structlog.get_logger(__name__)


class StoreSinkParams(Params):
    database: SecretStr = Field(
        default=SecretStr("sqlite:///market_data.db"),
        description="sqlite:///path or postgresql://user:pw@host/db (may hold a password).",
    )
    url: str | None = Field(default=None, description="Base URL of a store service (HTTP).")
    token: SecretStr | None = Field(default=None, description="Bearer token for the service.")
    migrate: bool = Field(default=True, description="Apply migrations when opening the store.")
    dead_letter_path: str | None = Field(
        default=None, description="Rejected rows (default: next to the SQLite file)."
    )
    http_batch: int = Field(default=10_000, ge=1, description="Rows per HTTP request.")
    http_concurrency: int = Field(
        default=2, ge=1, le=16, description="HTTP requests in flight at once (over HTTP)."
    )
    reason: Reason | None = Field(
        default=None,
        description=(
            "Why these versions are written (backfill, correction...): fills the records' "
            "empty reason."
        ),
    )
    attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "HTTP attempts per request: retries on 429/502/503/504 and connection errors, "
            "backing off up to 5 s (8: about 11 s for a restarting service)."
        ),
    )


class StoreSink(SinkComponent[StoreSinkParams]):
    """Upserts batches into the store (in process or through its HTTP service)."""

    Params = StoreSinkParams
    description: ClassVar[str] = "Writes batches into the market-data store (idempotent upsert)."

    def __init__(self, node_id: str, params: StoreSinkParams) -> None:
        super().__init__(node_id, params)
        if params.url is None:
            _check_database(params.database.get_secret_value())
        self.store: Store | None = None
        """The in-process store written to (``None`` over HTTP)."""
        self.client: AsyncStoreClient | None = None
        self._shared_by_job = False
        self._receipts: list[WriteReceipt] = []
        self._inflight: set[asyncio.Task[int]] = set()
        self._retries_counted = 0

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        p = self.params
        if p.url is not None:
            from market_data_store.client import AsyncStoreClient  # noqa: PLC0415

            token = p.token.get_secret_value() if p.token is not None else None
            self.client = AsyncStoreClient(p.url, token=token, attempts=p.attempts)
            logger.info("store sink over http", node=self.node_id, url=p.url)
            return
        if ctx.services.store is not None:
            self.store = ctx.services.store
            return
        self.store = await ctx.services.open_store(
            self._database(ctx), migrate=p.migrate, dead_letter_path=p.dead_letter_path
        )
        self._shared_by_job = True

    def _database(self, ctx: Context) -> str:
        """The node's own ``database``, else the job's, else the param's default."""
        if "database" not in self.params.model_fields_set and ctx.services.database is not None:
            return ctx.services.database.get_secret_value()
        return self.params.database.get_secret_value()

    async def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        batch = self._with_reason(batch)
        if self.client is None:
            assert self.store is not None, "open() first"
            self._receipts.append(await self.store.submit_arrow(batch, records.kind_of(batch)))
            self._settle(wait=False)
            self.context.count("written", batch.num_rows)
            return
        size, kind = self.params.http_batch, records.kind_of(batch)
        for start in range(0, batch.num_rows, size):
            while len(self._inflight) >= self.params.http_concurrency:
                await self._settle_requests(asyncio.FIRST_COMPLETED)
            part = batch.slice(start, size)
            task = asyncio.create_task(self.client.write_arrow(part, kind))
            self._inflight.add(task)
        self.context.count("written", batch.num_rows)

    def _with_reason(self, batch: pa.Table) -> pa.Table:
        """The batch with the ``reason`` param where its records have none."""
        reason = self.params.reason
        if reason is None:
            return batch
        if "reason" not in batch.column_names:
            return batch.append_column("reason", pa.repeat(pa.scalar(reason), batch.num_rows))
        index = batch.column_names.index("reason")
        filled = pc.fill_null(batch.column(index).cast(pa.string()), reason)
        return batch.set_column(index, batch.schema.field(index).with_type(pa.string()), filled)

    async def _settle_requests(self, when: str = asyncio.ALL_COMPLETED) -> None:
        """Wait for requests in flight (the first to end, or all); count what they
        acknowledged and raise the first failure."""
        if not self._inflight:
            return
        assert self.client is not None
        done, self._inflight = await asyncio.wait(self._inflight, return_when=when)
        if self.client.retries > self._retries_counted:
            self.context.count("retries", self.client.retries - self._retries_counted)
            self._retries_counted = self.client.retries
        failed = None
        for task in done:
            error = task.exception()  # retrieved from every task, not only the first
            if error is None:
                self.context.count("acknowledged", task.result())
            elif failed is None:
                failed = error
        if failed is not None:
            raise failed

    async def flush(self) -> None:
        await self._settle_requests()
        if self.store is not None:
            await self.store.flush()
            self._settle(wait=True)

    async def commit(self) -> None:
        """In process: wait until the store wrote (or dead-lettered) everything written so
        far. Over HTTP a write returns once the service acknowledged it: durable under the
        service's ``MDS_ACK=durable`` (its default)."""
        await self.flush()

    def _settle(self, *, wait: bool) -> None:
        """Count the rows of settled writes that were not stored (all of them once flushed)."""
        pending = []
        for receipt in self._receipts:
            if not receipt.done:
                pending.append(receipt)
                continue
            missing = receipt.total - receipt.written
            if missing:
                self.context.count("not_stored", missing)
                logger.warning(
                    "rows not stored by the store",
                    node=self.node_id,
                    rows=missing,
                    dead_lettered=receipt.dead_lettered,
                    refused=[(r.index, r.reason) for r in receipt.refused[:5]],
                )
        assert not (wait and pending), "flush() settles every write"
        self._receipts = pending

    async def close(self) -> None:
        try:
            for task in self._inflight:  # a stop that did not flush: nothing to wait for
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            self._inflight.clear()
            if self.client is not None:
                await self.client.aclose()
            if self.store is not None and self._shared_by_job:
                await self.context.services.release(self.store)
        finally:
            self.client = None
            self._shared_by_job = False
            await super().close()


def _check_database(database: str) -> None:
    """A clear error at validation time for a URL the store would refuse."""
    try:
        from market_data_store.dsn import DatabaseUrl  # noqa: PLC0415
    except ImportError:
        msg = "the store sink needs market-data-store: pip install 'market-data-pipeline[store]'"
        raise ValueError(msg) from None
    from market_data_store.exceptions import StoreConfigurationError  # noqa: PLC0415

    try:
        DatabaseUrl.parse(database)
    except StoreConfigurationError as error:
        raise ValueError(f"database: {error}") from None
