"""The kinds of component (``ComponentKind``), apart from the registry.

The ``mdp`` CLI types an option with it; here it costs nothing to import, while the
registry pulls in the components, pyarrow and pydantic. ``market_data_pipeline.registry``
re-exports it, and that is where users import it from.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ComponentKind"]


class ComponentKind(StrEnum):
    PROVIDER = "provider"
    OPERATOR = "operator"
    SINK = "sink"
