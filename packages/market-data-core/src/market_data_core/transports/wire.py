"""The one wire format of telemetry, shared by every transport and every package.

A message is a flat mapping of four string fields (a Redis stream entry, a JSON object):

``type``
    the contract name: ``FeedbackEvent`` or ``RateAdjustment``
``contract``
    ``CONTRACT_VERSION`` of the writer; a reader refuses another *major* version
``publisher``
    the id of the publishing instance (a new id after each restart)
``body``
    the message as JSON (``model_dump_json``); readers ignore fields they do not know
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from market_data_core.exceptions import ContractError
from market_data_core.telemetry import FeedbackEvent, RateAdjustment
from market_data_core.version import CONTRACT_VERSION

__all__ = ["MESSAGE_TYPES", "WireMessage", "decode", "encode"]

MESSAGE_TYPES: dict[str, type[FeedbackEvent] | type[RateAdjustment]] = {
    "FeedbackEvent": FeedbackEvent,
    "RateAdjustment": RateAdjustment,
}
_MAJOR = CONTRACT_VERSION.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class WireMessage:
    message: FeedbackEvent | RateAdjustment
    publisher: str
    contract: str


def encode(message: FeedbackEvent | RateAdjustment, *, publisher: str) -> dict[str, str]:
    """The wire fields of ``message`` published by ``publisher``."""
    return {
        "type": type(message).__name__,
        "contract": CONTRACT_VERSION,
        "publisher": publisher,
        "body": message.model_dump_json(),
    }


def decode(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> WireMessage:
    """Parse wire fields; raise ``ContractError`` naming what is wrong."""
    try:
        text = {_text(key): _text(value) for key, value in fields.items()}
    except UnicodeDecodeError as exc:
        msg = f"wire message is not UTF-8 text: {exc}"
        raise ContractError(msg) from exc
    missing = sorted({"type", "contract", "publisher", "body"} - text.keys())
    if missing:
        msg = f"wire message lacks field(s) {', '.join(missing)}"
        raise ContractError(msg)
    model = MESSAGE_TYPES.get(text["type"])
    if model is None:
        msg = f"unknown message type {text['type']!r}; known: {', '.join(MESSAGE_TYPES)}"
        raise ContractError(msg)
    if text["contract"].split(".", 1)[0] != _MAJOR:
        msg = (
            f"{text['type']} has contract version {text['contract']}, this reader speaks "
            f"{CONTRACT_VERSION}: major versions differ"
        )
        raise ContractError(msg)
    try:
        message = model.model_validate_json(text["body"])
    except ValidationError as exc:
        msg = f"invalid {text['type']} body: {exc}"
        raise ContractError(msg) from exc
    return WireMessage(message=message, publisher=text["publisher"], contract=text["contract"])


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
