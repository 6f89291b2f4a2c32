"""``hash_partition``: total, order-keeping, and the same assignment in every process."""

import json
import os
import random
import subprocess
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import make_trade
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.partition import (
    HashPartition,
    HashPartitionParams,
    partition_of,
    partitions_of,
    split_rows,
)
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes, run_operator


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    [("AAPL", 8, 7), ("MSFT", 8, 0), ("BTC/USDT", 16, 3), ("ES=F", 3, 0), ("AAPL", 1, 0)],
)
def test_partition_of_is_pinned(key: str, partitions: int, expected: int) -> None:
    # mmh3.hash(key, seed=0, signed=False) % partitions: changing it reshuffles every worker
    assert partition_of(key, partitions) == expected


def test_partition_of_refuses_zero_partitions() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        partition_of("AAPL", 0)


_SCRIPT = """
import json, sys
import pyarrow as pa
from market_data_pipeline.operators.partition import partition_of, partitions_of
keys, n = json.load(sys.stdin)
print(json.dumps([[partition_of(k, n) for k in keys], partitions_of(pa.array(keys), n).tolist()]))
"""


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_assignment_is_the_same_in_a_fresh_process(hash_seed: str) -> None:
    rng = random.Random(7)
    alphabet = "ABCXYZ0189./=^-_éßλ中"
    keys = ["", "AAPL", "BTC/USDT", "ES=F", "^GSPC"] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(300)
    ]
    n = 7
    here = [partition_of(k, n) for k in keys]
    assert partitions_of(pa.array(keys), n).tolist() == here
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        input=json.dumps([keys, n]),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    scalar, vectorized = json.loads(done.stdout)
    assert scalar == here
    assert vectorized == here


keys_strategy = st.lists(
    st.none()
    | st.sampled_from(["AAPL", "MSFT", "BTC/USDT", "ES=F", "é", ""])
    | st.text(max_size=6),
    min_size=1,
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(keys=keys_strategy, partitions=st.integers(1, 8), cut=st.integers(0, 60))
@pytest.mark.asyncio
async def test_every_row_goes_to_exactly_one_output_in_order(
    keys: list[str | None], partitions: int, cut: int
) -> None:
    cut %= len(keys) + 1
    table = pa.table({"symbol": keys, "n": list(range(len(keys)))})
    batches = [table.slice(0, cut), table.slice(cut)]
    op = HashPartition("hp", HashPartitionParams(partitions=partitions))
    out, _ = await run_operator(op, batches)
    assert set(out) <= set(op.outputs)
    seen: list[int] = []
    for port, part in out.items():
        numbers = part.column("n").to_pylist()
        assert numbers == sorted(numbers)
        for key in part.column("symbol").to_pylist():
            assert port == f"p{partition_of(key or '', partitions)}"
        seen += numbers
    assert sorted(seen) == list(range(len(keys)))


def test_non_string_keys_hash_their_text() -> None:
    assert partitions_of(pa.array([1, 22, None]), 5).tolist() == [
        partition_of("1", 5),
        partition_of("22", 5),
        partition_of("", 5),
    ]
    encoded = pa.array(["AAPL", "MSFT", "AAPL"]).dictionary_encode()
    assert partitions_of(encoded, 8).tolist() == [7, 0, 7]


def test_split_rows_keeps_order_and_sizes() -> None:
    table = pa.table({"n": list(range(6))})
    parts = split_rows(table, np.array([2, 0, 2, 1, 0, 2]), 4)
    assert [p.column("n").to_pylist() for p in parts] == [[1, 4], [3], [0, 2, 5], []]
    same = split_rows(table, np.array([1] * 6), 2)
    assert same[1] is table
    assert same[0].num_rows == 0


@pytest.mark.asyncio
async def test_custom_key_and_missing_key() -> None:
    table = records.from_models([make_trade(exchange="XNAS"), make_trade(exchange="XNYS")])
    op = HashPartition("hp", HashPartitionParams(key="exchange", partitions=4))
    out, _ = await run_operator(op, [table])
    expected = {f"p{partition_of(e, 4)}" for e in ("XNAS", "XNYS")}
    assert set(out) == expected
    op = HashPartition("hp", HashPartitionParams(key="venue", partitions=4))
    with pytest.raises(ValueError, match=r"no field 'venue'"):
        await run_operator(op, [table])


@pytest.mark.parametrize(
    ("params", "edges", "message"),
    [
        ({"partitions": 0}, ["src -> op", "op.p0 -> out"], r"node 'op'.*params.partitions"),
        ({}, ["src -> op", "op.p0 -> out"], r"node 'op'.*params.partitions"),
        ({"partitions": 2}, ["src -> op", "op.p2 -> out"], r"no output 'p2' \(p0, p1\)"),
    ],
)
def test_graph_errors(params: dict[str, Any], edges: list[str], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        Graph.build(
            [
                node("src", "testing_provider", name="x"),
                node("op", "hash_partition", **params),
                node("out", "collect"),
            ],
            edges,
        ).validated(registry_with_fakes())


@pytest.mark.asyncio
async def test_hash_partition_in_a_graph() -> None:
    symbols = ["AAPL", "MSFT", "BTC/USDT", "ES=F", "^GSPC", "6EH4.XCME"]
    TestingProvider.feed(
        "test_partition_graph",
        [[make_trade(symbol=s, price=float(i)) for i, s in enumerate(symbols)]] * 3,
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_partition_graph"),
            node("split", "hash_partition", partitions=3),
            *(node(f"w{i}", "collect", name=f"test_partition_graph_{i}") for i in range(3)),
        ],
        ["src -> split", *(f"split.p{i} -> w{i}" for i in range(3))],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    total = 0
    for i in range(3):
        table = collect(f"test_partition_graph_{i}")
        got = table.column("symbol").to_pylist() if table is not None else []
        assert all(partition_of(s, 3) == i for s in got)
        total += len(got)
    assert total == result.nodes["split"].items_out == 18
