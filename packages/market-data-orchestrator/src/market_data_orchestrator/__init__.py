"""market-data-orchestrator: a placeholder distribution.

Nothing in this package works yet: it exists so that the workspace, the lock file and
the CI sessions cover every member from day one. See the project's issue tracker for
what will be built here; until then it exports only its version.
"""

from importlib.metadata import version as _version

__version__ = _version("market-data-orchestrator")
__all__ = ["__version__"]
