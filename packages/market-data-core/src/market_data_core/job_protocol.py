"""The control protocol between a supervisor and a pipeline job (``mdp run --control``), and
the job's run summary: JSON lines on the child's standard streams.

- **stdin, commands** (:class:`JobCommand`): ``{"action": "pause" | "resume" | "reload",
  "id": "..."}``; the ``id`` (optional) comes back in the acknowledgement.
- **stdout, events** (:class:`JobEvent`, told apart by ``event``):
  :class:`JobStarted` once; :class:`JobProgress` every interval; :class:`JobControlAck`,
  the child's answer to each command; :class:`JobError` for a command it could not read;
  last :class:`RunSummary` (what ``mdp run --json`` prints too).

Readers are tolerant (unknown fields are ignored; a line that is not an event is skipped by
the supervisor), writers build these models, so the two packages cannot drift apart. The
schemas are committed under ``docs/contracts`` like every contract.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, NonNegativeFloat, NonNegativeInt, RootModel

from market_data_core._base import PeerModel
from market_data_core.control import ControlAction, ControlResult

__all__ = [
    "DrainReport",
    "JobCommand",
    "JobControlAck",
    "JobError",
    "JobEvent",
    "JobProgress",
    "JobStarted",
    "NodeProgress",
    "NodeSummary",
    "NotFlushed",
    "RunSummary",
    "StoreReport",
]

_Name = Annotated[str, Field(min_length=1, max_length=256)]
_Id = Annotated[str, Field(max_length=128)]
_Message = Annotated[str, Field(max_length=4096)]
_Counts = dict[_Name, NonNegativeInt]


class JobCommand(PeerModel):
    """A command to a running job (one line on its stdin)."""

    action: ControlAction
    id: _Id | None = None


class JobStarted(PeerModel):
    """The job's graph opened."""

    event: Literal["started"] = "started"
    job: _Name
    pid: Annotated[int, Field(gt=0)]
    mode: Literal["dag", "classic"]


class NodeProgress(PeerModel):
    """Rows one node has taken in and handed on so far."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    rows_in: NonNegativeInt = Field(default=0, alias="in")
    rows_out: NonNegativeInt = Field(default=0, alias="out")


class JobProgress(PeerModel):
    """Where the job is: its runtime state, each node's counters and the pauses so far."""

    event: Literal["progress"] = "progress"
    state: Annotated[str, Field(max_length=32)]
    nodes: dict[_Name, NodeProgress] = Field(default_factory=dict)
    pauses: NonNegativeInt = 0


class JobControlAck(PeerModel):
    """The job's answer to a command, with the command's ``id``."""

    event: Literal["control"] = "control"
    id: _Id | None = None
    result: ControlResult


class JobError(PeerModel):
    """A command line the job could not read."""

    event: Literal["error"] = "error"
    message: _Message


class NodeSummary(PeerModel):
    """One node of a finished run: its type and kind, rows in and out, and its named
    counters (``late``, ``dropped``, ``acked``, ``written``...) as further integer fields."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)
    __pydantic_extra__: dict[str, NonNegativeInt] = Field(init=False)

    type: _Name
    kind: Literal["provider", "operator", "sink"]
    rows_in: NonNegativeInt = Field(default=0, alias="in")
    rows_out: NonNegativeInt = Field(default=0, alias="out")

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.__pydantic_extra__ or {})


class StoreReport(PeerModel):
    """The in-process store a run wrote to: its (redacted) database and rows per table
    before and after the run."""

    database: _Message
    tables: dict[_Name, tuple[NonNegativeInt, NonNegativeInt]] = Field(default_factory=dict)


class NotFlushed(PeerModel):
    """What a stop could not flush in its time."""

    channels: _Counts = Field(default_factory=dict)
    """Rows that were queued in front of each node."""
    cancelled: list[_Name] = Field(default_factory=list)
    """Nodes ended before they finished (their open windows or buffers were not emitted)."""
    store: _Counts = Field(default_factory=dict)
    """Records the store dead-lettered, dropped or failed to write."""


class DrainReport(PeerModel):
    """How a stop drained: within ``timeout`` seconds, in ``seconds``, completely or not."""

    timeout: NonNegativeFloat
    seconds: NonNegativeFloat
    complete: bool
    not_flushed: NotFlushed | None = None


class RunSummary(PeerModel):
    """What a run did (the last event, and ``mdp run --json``)."""

    event: Literal["summary"] = "summary"
    job: _Name
    mode: Literal["dag", "classic"]
    state: Annotated[str, Field(max_length=32)]
    seconds: NonNegativeFloat
    nodes: dict[_Name, NodeSummary] = Field(default_factory=dict)
    late: NonNegativeInt = 0
    pauses: NonNegativeInt = 0
    store: StoreReport | None = None
    drain: DrainReport | None = None
    """``None`` when no stop came (the input ended)."""


class JobEvent(
    RootModel[
        Annotated[
            JobStarted | JobProgress | JobControlAck | JobError | RunSummary,
            Field(discriminator="event"),
        ]
    ]
):
    """One line of a job's stdout, whichever event it is (``JobEvent.model_validate_json``)."""

    model_config = ConfigDict(frozen=True)
