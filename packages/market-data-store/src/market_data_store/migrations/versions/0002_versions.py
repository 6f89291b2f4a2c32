"""Versions, history and every tick: nanoseconds, ordinals, as_of/revision/reason.

- every data table gains ``as_of`` (integer nanoseconds), ``revision`` and ``reason``;
  rows stored before get ``as_of = 0`` and ``revision = 0``: the oldest version there is,
  so any versioned write of the same key outranks them;
- trades, quotes and signals gain ``ts_nanos`` (the nanoseconds below ``ts``'s
  microsecond); ticks stored before get ``-1`` (unknown: they were truncated);
- trades are keyed by ``(symbol, ts, ts_nanos, exchange, trade_id, ordinal)`` instead of
  ``(symbol, ts, trade_id, price, size)``: rows that the new key would merge (two trades of
  one microsecond, venue and id, told apart only by price or size) get ordinals 1, 2... in
  the order they were stored, so every row is kept; a trade's missing exchange is ``''``;
- quotes are keyed by ``(symbol, ts, ts_nanos, exchange, sequence, ordinal)`` (a missing
  sequence is ``-1``) and gain ``received_at``, trades too;
- a signal's metadata is JSON text in PostgreSQL too (it was ``jsonb``);
- ``<table>_history`` tables keep the versions a newer one replaced, filled by a trigger on
  update (a new version), with ``superseded_at``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")
Float = sa.Float(53)
_VERSION = ("as_of", "revision", "reason")

# The store's layout of each table after this revision (frozen here: later revisions do
# not change what this one did). Name -> (type, nullable, server default).
_COLUMNS: dict[str, list[tuple[str, object, bool, str | None]]] = {
    "bars": [
        ("source", sa.Text, False, None), ("symbol", sa.Text, False, None),
        ("timeframe", sa.Text, False, None), ("start", Timestamp, False, None),
        ("open", Float, False, None), ("high", Float, False, None), ("low", Float, False, None),
        ("close", Float, False, None), ("volume", Float, False, None),
        ("trade_count", sa.BigInteger, True, None), ("vwap", Float, True, None),
    ],
    "trades": [
        ("symbol", sa.Text, False, None), ("ts", Timestamp, False, None),
        ("ts_nanos", sa.SmallInteger, False, "0"), ("exchange", sa.Text, False, "''"),
        ("trade_id", sa.Text, False, "''"), ("ordinal", sa.BigInteger, False, "0"),
        ("price", Float, False, None), ("size", Float, False, None),
        ("side", sa.Text, True, None), ("conditions", sa.Text, True, None),
        ("received_at", sa.BigInteger, True, None),
    ],
    "quotes": [
        ("symbol", sa.Text, False, None), ("ts", Timestamp, False, None),
        ("ts_nanos", sa.SmallInteger, False, "0"), ("exchange", sa.Text, False, "''"),
        ("sequence", sa.BigInteger, False, "-1"), ("ordinal", sa.BigInteger, False, "0"),
        ("bid", Float, False, None), ("ask", Float, False, None),
        ("bid_size", Float, False, None), ("ask_size", Float, False, None),
        ("received_at", sa.BigInteger, True, None),
    ],
    "signals": [
        ("source", sa.Text, False, None), ("symbol", sa.Text, False, None),
        ("ts", Timestamp, False, None), ("ts_nanos", sa.SmallInteger, False, "0"),
        ("name", sa.Text, False, None), ("value", Float, False, None),
        ("score", Float, True, None), ("metadata", sa.Text, False, None),
    ],
}  # fmt: skip
_VERSION_COLUMNS: list[tuple[str, object, bool, str | None]] = [
    ("as_of", sa.BigInteger, False, "0"),
    ("revision", sa.BigInteger, False, "0"),
    ("reason", sa.Text, True, None),
]
_KEYS = {
    "bars": ("source", "symbol", "timeframe", "start"),
    "trades": ("symbol", "ts", "ts_nanos", "exchange", "trade_id", "ordinal"),
    "quotes": ("symbol", "ts", "ts_nanos", "exchange", "sequence", "ordinal"),
    "signals": ("source", "symbol", "ts", "ts_nanos", "name"),
}
_VALUES = {
    "bars": ("open", "high", "low", "close", "volume", "trade_count", "vwap"),
    "trades": ("price", "size", "side", "conditions", "received_at"),
    "quotes": ("bid", "ask", "bid_size", "ask_size", "received_at"),
    "signals": ("value", "score", "metadata"),
}
_HISTORY_INDEX = {
    "bars": ("symbol", "timeframe", "start"),
    "trades": ("symbol", "ts"),
    "quotes": ("symbol", "ts"),
    "signals": ("symbol", "name", "ts"),
}
_LEGACY = -1


def _all_columns(table: str) -> list[str]:
    return [name for name, *_ in _COLUMNS[table]] + [name for name, *_ in _VERSION_COLUMNS]


def _column(name: str, kind: object, nullable: bool, default: str | None) -> sa.Column[object]:
    server_default = sa.text(default) if default is not None else None
    return sa.Column(name, kind, nullable=nullable, server_default=server_default)  # type: ignore[arg-type]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()
    for table in _COLUMNS:
        _create_history(table, dialect)
    if dialect == "postgresql":
        # counts, per transaction, the versions a write found tied with the stored one
        # (equal as_of and revision, other values); returns whether the new one wins
        op.execute(
            "CREATE FUNCTION mds_tie(wins boolean) RETURNS boolean LANGUAGE plpgsql VOLATILE"
            " AS $$ BEGIN PERFORM set_config('mds.ties', (coalesce(nullif("
            "current_setting('mds.ties', true), ''), '0')::bigint + 1)::text, true);"
            " RETURN wins; END $$"
        )


# --- PostgreSQL: columns added in place (no rewrite), keys rebuilt ----------------------


def _upgrade_postgres() -> None:
    added = ", ".join(
        f"ADD COLUMN {name} {ddl}"
        for name, ddl in (
            ("as_of", "bigint NOT NULL DEFAULT 0"),
            ("revision", "bigint NOT NULL DEFAULT 0"),
            ("reason", "text"),
        )
    )
    op.execute(f"ALTER TABLE bars {added}")
    for table in ("trades", "quotes", "signals"):
        # the default -1 marks the rows stored so far; new rows always give ts_nanos
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN ts_nanos smallint NOT NULL DEFAULT {_LEGACY}, {added}"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN ts_nanos SET DEFAULT 0")
    op.execute(
        "ALTER TABLE trades ADD COLUMN ordinal bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN received_at bigint"
    )
    op.execute("UPDATE trades SET exchange = '' WHERE exchange IS NULL")
    op.execute(
        "ALTER TABLE trades ALTER COLUMN exchange SET DEFAULT '',"
        " ALTER COLUMN exchange SET NOT NULL"
    )
    op.execute(
        "UPDATE trades t SET ordinal = r.n FROM (SELECT ctid, row_number() OVER"
        " (PARTITION BY symbol, ts, exchange, trade_id ORDER BY ingested_at, price, size) - 1"
        " AS n FROM trades) r WHERE t.ctid = r.ctid AND r.n > 0"
    )
    op.execute(
        "ALTER TABLE quotes ADD COLUMN sequence bigint NOT NULL DEFAULT -1,"
        " ADD COLUMN ordinal bigint NOT NULL DEFAULT 0, ADD COLUMN received_at bigint"
    )
    op.execute("UPDATE signals SET ts_nanos = 0")  # signals were never truncated ticks
    # metadata as the JSON text the store writes, the same in both databases (and compared
    # as text between versions); cast to jsonb to query it
    op.execute("ALTER TABLE signals ALTER COLUMN metadata TYPE text USING metadata::text")
    for table in ("trades", "quotes", "signals"):
        key = ", ".join(f'"{c}"' for c in _KEYS[table])
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, ADD CONSTRAINT pk_{table}"
            f" PRIMARY KEY ({key})"
        )
    for table in ("trades", "quotes"):  # finds the ticks stored before nanoseconds
        op.execute(
            f"CREATE INDEX ix_{table}_legacy ON {table} (symbol, ts) WHERE ts_nanos = {_LEGACY}"
        )


# --- SQLite: tables rebuilt (a key cannot change in place) -------------------------------


def _upgrade_sqlite() -> None:
    for name, kind, nullable, default in _VERSION_COLUMNS:
        op.add_column("bars", _column(name, kind, nullable, default))
    sources = {
        "trades": {
            "ts_nanos": str(_LEGACY),
            "exchange": "coalesce(exchange, '')",
            "ordinal": (
                "row_number() OVER (PARTITION BY symbol, ts, coalesce(exchange, ''), trade_id"
                " ORDER BY ingested_at, price, size) - 1"
            ),
            "received_at": "NULL",
        },
        "quotes": {
            "ts_nanos": str(_LEGACY),
            "sequence": "-1",
            "ordinal": "0",
            "received_at": "NULL",
        },
        "signals": {"ts_nanos": "0"},
    }
    for table, computed in sources.items():
        new = f"{table}_0002"
        op.create_table(
            new,
            *(_column(*spec) for spec in _COLUMNS[table]),
            *(_column(*spec) for spec in _VERSION_COLUMNS),
            sa.Column("ingested_at", Timestamp, nullable=False),
            sa.PrimaryKeyConstraint(*_KEYS[table], name=f"pk_{table}"),
        )
        names = [*(n for n, *_ in _COLUMNS[table]), "ingested_at"]
        select = ", ".join(computed.get(n, n) for n in names)
        op.execute(f"INSERT INTO {new} ({', '.join(names)}) SELECT {select} FROM {table}")
        op.drop_table(table)
        op.rename_table(new, table)
    op.create_index("ix_signals_symbol_name_ts", "signals", ["symbol", "name", "ts"])
    for table in ("trades", "quotes"):
        op.execute(
            f"CREATE INDEX ix_{table}_legacy ON {table} (symbol, ts) WHERE ts_nanos = {_LEGACY}"
        )


# --- history -----------------------------------------------------------------------------


def _create_history(table: str, dialect: str) -> None:
    history = f"{table}_history"
    op.create_table(
        history,
        *(_column(name, kind, nullable, None) for name, kind, nullable, _ in _COLUMNS[table]),
        *(_column(name, kind, nullable, None) for name, kind, nullable, _ in _VERSION_COLUMNS),
        sa.Column("ingested_at", Timestamp, nullable=False),
        sa.Column("superseded_at", Timestamp, nullable=False),
    )
    op.create_index(f"ix_{history}_key", history, list(_HISTORY_INDEX[table]))
    if dialect == "postgresql":  # rows come in time order: a BRIN index costs next to nothing
        op.execute(
            f"CREATE INDEX ix_{history}_superseded_at ON {history} USING brin (superseded_at)"
        )
    # SQLite: the hourly purge scans (an index would double the cost of every revision)
    columns = [*_all_columns(table), "ingested_at"]
    names = ", ".join(f'"{c}"' for c in columns)
    old = ", ".join(f'OLD."{c}"' for c in columns)
    changed = (*_VALUES[table], "as_of", "revision")  # a new version: every update
    changed_old = ", ".join(f'OLD."{c}"' for c in changed)
    changed_new = ", ".join(f'NEW."{c}"' for c in changed)
    insert = f'INSERT INTO {history} ({names}, "superseded_at") VALUES ({old}, NEW."ingested_at")'
    if dialect == "postgresql":
        op.execute(
            f"CREATE FUNCTION mds_{history}() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {insert}; RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {history} AFTER UPDATE ON {table} FOR EACH ROW"
            f" WHEN (({changed_old}) IS DISTINCT FROM ({changed_new}))"
            f" EXECUTE FUNCTION mds_{history}()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER {history} AFTER UPDATE ON {table} FOR EACH ROW"
            f" WHEN ({changed_old}) IS NOT ({changed_new}) BEGIN {insert}; END"
        )


def downgrade() -> None:
    msg = "revision 0002 cannot be undone: ticks would merge again (restore a backup instead)"
    raise NotImplementedError(msg)
