"""How many replicas a job may have: at least one, at most its ``max_replicas`` and, for a
partitioned job, one per partition."""

from __future__ import annotations

from market_data_orchestrator.deployment import JobSpec

__all__ = ["check_replicas"]


def check_replicas(name: str, spec: JobSpec, replicas: int) -> None:
    """``ValueError`` when the job cannot have ``replicas`` replicas."""
    if replicas < 1:
        raise ValueError(f"job {name}: replicas must be at least 1, got {replicas}")
    if replicas > spec.max_replicas:
        raise ValueError(
            f"job {name} allows at most {spec.max_replicas} replicas (max_replicas), got {replicas}"
        )
    if spec.partitions is not None and replicas > spec.partitions:
        raise ValueError(
            f"job {name} has {spec.partitions} partitions: at most {spec.partitions}"
            f" replicas (one per partition), got {replicas}"
        )
