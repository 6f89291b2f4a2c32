"""The service's write-latency histogram counts every batch write to the database."""

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from market_data_core.testing import T0, make_bar


def _samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_every_batch_write_is_timed(client: TestClient) -> None:
    for request in range(3):  # durable acks: each answer comes after its batch is written
        bars = [make_bar(start=T0 + timedelta(minutes=10 * request + i)) for i in range(5)]
        answer = client.post("/v1/bars", json=[b.model_dump(mode="json") for b in bars])
        assert answer.status_code == 202, answer.text
    samples = _samples(client.get("/metrics").text)
    batches = samples["mds_batches_written_total"]
    assert batches >= 1
    assert samples["mds_write_duration_seconds_count"] == batches
    assert samples["mds_write_duration_seconds_sum"] > 0
    assert samples["mds_records_written_total"] == 15
