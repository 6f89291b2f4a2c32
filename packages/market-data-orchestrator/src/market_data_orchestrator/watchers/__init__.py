"""What the orchestrator watches outside itself, each in a task of its own.

- ``store_health``: the store's ``/readyz`` (hysteresis, the pause of the jobs that write);
- ``feedback``: the store coordinators' backpressure events from the feedback transport;
- ``polling``: the base of the watchers that poll a URL.
"""
