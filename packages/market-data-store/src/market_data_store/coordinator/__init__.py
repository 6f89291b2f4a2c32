"""The write coordinator: a bounded queue in front of a backend, with backpressure feedback.

``WriteCoordinator`` (``lifecycle``: start and stop) is the one public class; it owns one
collaborator per job, each given what it needs when built: ``Admission`` (``admission``: the
bounded queue's overflow strategies, backpressure, ``flush``), ``WorkerPool`` (``workers``:
taking batches and writing them, supervising the workers), ``OutageHold`` (``outage``:
retries, the circuit breaker, holding a batch through an outage), ``Isolation``
(``isolation``: splitting a refused batch until the bad records stand alone), ``Restarts``
(``restarts``: what a crashed worker costs), ``Settlement`` (``dead_letters``: counting and
telling settled records, giving a part up), ``Drain`` (``drain``: stopping). ``InFlight``
(``held``) tracks the records out of the queue and not settled yet, ``settings`` the arguments
and their checks, ``stats`` the counters; ``health`` turns them into stats and health.

Producers ``submit`` records (each call one chunk: ``market_data_store.chunks``); ``workers``
tasks take batches of up to ``batch_size`` records (or whatever arrived within
``flush_interval``) and hand them to ``writer.write``.

Accounting. Every accepted record ends in exactly one counter, so at any time::

    accepted == written + dead_lettered + dropped + failed + queue_size + in_flight

- ``written``: records of batches the writer returned from (the ``WriteResult`` counts rows;
  duplicates inside a batch count once there, every record counts here).
- ``dead_lettered``: records of batches kept in the dead-letter store.
- ``dropped``: evicted by ``overflow="drop_oldest"``, or still queued at
  ``stop(drain=False)`` when there is no dead-letter store. Logged and counted.
- ``failed``: records of batches that failed for good when there is no dead-letter store
  (or the dead-letter store itself failed). Logged and counted.

Overflow, when a batch does not fit in the free space:

- ``block`` (default): wait for space; a batch larger than the free space is queued in
  parts as space frees, in order. If the coordinator stops meanwhile the call raises
  ``CoordinatorStoppedError`` and the parts already queued stay accepted.
- ``drop_oldest``: queue the batch, evicting the oldest queued records (counted in
  ``dropped``); of a batch larger than the capacity only its newest records are kept.
- ``error``: raise ``QueueFullError`` and accept *nothing* of the call (all-or-nothing).

Failures. ``TransientBackendError`` is retried under the ``RetryPolicy``. When the
attempts run out, ``on_outage`` decides: ``hold`` (the default) keeps the batch in its
worker and tries it again whenever the breaker admits a batch, for as long as the
coordinator runs (an outage of the database delays writes but sends nothing to the
dead-letter store; once stopping, the batch is dead-lettered after its attempts so that a
stop ends); ``dead_letter`` sends it to the dead-letter store at once. Any other
``BackendError`` (``PermanentBackendError``: retrying cannot help) goes to the dead-letter
store at once, else counts as ``failed``. Each batch that is not written counts once as a
failure for the ``CircuitBreaker`` (a held batch once per round of attempts). While the
breaker is open, workers wait and take nothing: the queue fills and backpressure goes
``hard`` instead of data being thrown away; half-open, one trial batch goes through.

Isolation. A batch mixes the records of several callers. When the database refuses a
batch for good (``PermanentBackendError``), nothing of it was stored (a batch is one
transaction) and the batch is split in two, where one caller's records begin if possible
(the callers' records part first), else in the middle, and each half is written on its own,
recursively, until each failing part stands alone: every good record is written. Splits
inside one caller's records stop after ``_SPLITS_PER_BATCH`` (a caller that sends thousands
of bad records cannot make the database refuse them one by one); a part that fails then is
refused whole. The verdict on the parts that failed waits until the batch is done:

- when any part of the batch was written, or the database named the value it refused
  (``InvalidValueError``: SQLSTATE class 21, 22 or 23), the failures are the records' fault:
  each record of a failed part is refused, dead-lettered (else failed) with the database's
  reason, and named by its own call's ``WriteReceipt`` (what ``submit_many`` returns). A
  refusal is not a failure of the database: it never counts for the circuit breaker.
- when nothing of the batch could be written and the error was not about a value (a missing
  table, a permission), the failure is systemic: it counts once for the circuit breaker and
  the batch is dead-lettered (else failed) as before isolation.

So a caller's bad records cost that caller only: the other callers of its batch are written,
and the breaker stays closed.

Crashes. Any other exception out of a worker (a bug in the writer or here) crashes it; a
supervisor counts it in ``worker_restarts`` and restarts the worker with a short backoff.
The restarted worker first retries the batch its predecessor held; if that batch crashes a
worker twice it goes to the dead-letter store (else ``failed``), so a poison batch cannot
crash workers forever.

Stopping. ``stop(drain=True)`` refuses new records, stops lingering and returns once
everything accepted was written or dead-lettered. ``stop(drain=False)``, or a drain that
exceeds ``timeout``, cancels the workers and puts what is queued or in flight in the
dead-letter store (else counts it as ``dropped``). A write cancelled that way may have
committed; the store's writes are idempotent upserts, so replaying it is harmless.

Feedback: see ``market_data_store._feedback``; each watermark crossing publishes a
``FeedbackEvent`` (``seq`` + 1) and a heartbeat republishes the latest one every
``heartbeat_interval`` seconds. Publishing never blocks or breaks a write.
"""

from market_data_store.coordinator.lifecycle import WriteCoordinator
from market_data_store.coordinator.settings import CoordinatorState, OnOutage, Overflow, Writer
from market_data_store.coordinator.stats import CoordinatorStats

__all__ = [
    "CoordinatorState",
    "CoordinatorStats",
    "OnOutage",
    "Overflow",
    "WriteCoordinator",
    "Writer",
]
