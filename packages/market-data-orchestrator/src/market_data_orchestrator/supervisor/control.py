"""The control channel of a replica: commands as JSON lines on the child's stdin, each
answered by a ``control`` event (``JobControlAck``) on its stdout."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from market_data_core import ControlAction, ControlResult, ControlStatus
from market_data_core.job_protocol import JobCommand, JobControlAck
from market_data_orchestrator.supervisor.records import ReplicaRecord, control_result

__all__ = ["command", "fail_pending", "send", "settle"]


def send(replica: ReplicaRecord, action: ControlAction) -> asyncio.Future[ControlResult]:
    """Write a command to the child; the future gets its acknowledgement."""
    ack: asyncio.Future[ControlResult] = asyncio.get_running_loop().create_future()
    process = replica.process
    if process is None or process.stdin is None or process.stdin.is_closing():
        ack.set_result(control_result(action, replica.job.spec.name, ControlStatus.FAILED,
                                      "the replica is not running"))  # fmt: skip
        return ack
    command_id = f"{replica.job.spec.name}.{replica.index}.{uuid4().hex[:12]}"
    replica.acks[command_id] = (action, ack)
    line = JobCommand(action=action, id=command_id).model_dump_json() + "\n"
    process.stdin.write(line.encode())
    return ack


async def command(replica: ReplicaRecord, action: ControlAction, within: float) -> ControlResult:
    """Send ``action`` and wait up to ``within`` seconds for its acknowledgement."""
    name = replica.job.spec.name
    ack = send(replica, action)
    process = replica.process
    try:
        if process is not None and process.stdin is not None and not ack.done():
            await process.stdin.drain()
        return await asyncio.wait_for(asyncio.shield(ack), within)
    except (BrokenPipeError, ConnectionResetError):
        return control_result(action, name, ControlStatus.FAILED, "the replica's stdin is closed")
    except TimeoutError:
        return control_result(action, name, ControlStatus.FAILED,
                              f"no acknowledgement within {within:g} s")  # fmt: skip


def settle(replica: ReplicaRecord, event: JobControlAck) -> ControlResult:
    """Hand an acknowledgement to the command waiting for it; the result."""
    _, ack = replica.acks.pop(str(event.id), (None, None))
    if ack is not None and not ack.done():
        ack.set_result(event.result)
    return event.result


def fail_pending(replica: ReplicaRecord) -> None:
    """Answer every command still waiting: the child exited before acknowledging it."""
    for action, ack in replica.acks.values():
        if not ack.done():
            ack.set_result(
                control_result(action, replica.job.spec.name, ControlStatus.FAILED,
                               "the replica exited before acknowledging")
            )  # fmt: skip
    replica.acks.clear()
