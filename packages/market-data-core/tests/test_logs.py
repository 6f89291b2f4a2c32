"""Logging of the services: structlog and the standard library's loggers (uvicorn's,
asyncpg's) come out as one JSON object per line, and query secrets never reach a log."""

import json
import logging

import pytest
import structlog

from market_data_core.logs import configure_logging, redacted_query


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_every_record_is_a_json_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    structlog.get_logger("market_data_store.store").info("store started", backend="sqlite")
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8080")
    logging.getLogger("asyncpg.pool").warning("Failed to restore the pool connection floor")
    logging.getLogger("market_data_store.coordinator").debug("below the threshold")
    lines = capsys.readouterr().err.splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    assert [r["event"] for r in records] == [
        "store started",
        "Uvicorn running on http://127.0.0.1:8080",
        "Failed to restore the pool connection floor",
    ]
    assert records[0]["backend"] == "sqlite"
    assert records[1]["logger"] == "uvicorn.error"
    assert {r["level"] for r in records} == {"info", "warning"}
    assert all(r["timestamp"].endswith("Z") for r in records)


def test_fields_a_stdlib_logger_passes_as_extra_are_keys_of_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Core logs through the standard library (it does not need structlog): the fields it
    passes as ``extra`` come out as keys of the JSON line, not lost and not in the text."""
    configure_logging(json=True)
    logging.getLogger("market_data_core.transports.redis").warning(
        "feedback publish failed", extra={"stream": "md:feedback", "error": "timeout"}
    )
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "\x1b[1mStarted\x1b[0m"}
    )
    first, second = map(json.loads, capsys.readouterr().err.splitlines())
    assert first["event"] == "feedback publish failed"
    assert (first["stream"], first["error"]) == ("md:feedback", "timeout")
    assert "color_message" not in second  # uvicorn's coloured copy of its message


@pytest.mark.parametrize("level", ["info", "debug"])
def test_library_chatter_is_debug(capsys: pytest.CaptureFixture[str], level: str) -> None:
    """httpx says INFO per request and Alembic per migration step: at the default level a
    user sees their warnings only; at debug, everything."""
    configure_logging(json=True, level=level)
    logging.getLogger("httpx").info("HTTP Request: POST http://store/v1/bars 202")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade -> 0001")
    logging.getLogger("httpx").warning("a warning still shows")
    logging.getLogger("market_data_store.store").info("our own info shows")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    shown = ["a warning still shows", "our own info shows"]
    if level == "debug":
        shown = ["HTTP Request: POST http://store/v1/bars 202", "Running upgrade -> 0001", *shown]
    assert events == shown


def test_the_level_drops_what_is_below_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="warning")
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().warning("loud")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["loud"]


def test_configuring_twice_does_not_double_the_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    configure_logging(json=True)
    logging.getLogger("x").warning("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("", ""),
        ("limit=3", "limit=3"),
        ("token=s3cret&limit=3", "token=***&limit=3"),
        ("api_key=s3cret&access_token=s3cret", "***&***"),
        ("password=s3cret&Authorization=s3cret", "***&***"),
        ("symbol=BTC%2FUSDT", "symbol=BTC%2FUSDT"),
        ("t=s3cret&symbol=X", "***&symbol=X"),  # a name that does not look secret
        ("s3cret&limit=1", "***&limit=1"),  # a bare value: the name is the secret
        ("limit=1&limit=s3cret", "limit=1&limit=s3cret"),  # the route's own: its values
    ],
)
def test_redacted_query(query: str, logged: str) -> None:
    """Only the values of the route's own parameters reach the log."""
    assert redacted_query(query, known={"limit", "symbol", "token"}) == logged
