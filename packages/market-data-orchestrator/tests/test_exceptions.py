"""The orchestrator's errors: one tree under core's MarketDataError, importable from the
modules that raise them as before."""

import pytest

from market_data_core.exceptions import ConfigurationError, MarketDataError
from market_data_orchestrator import exceptions
from market_data_orchestrator.exceptions import OrchestratorError


@pytest.mark.parametrize("name", [n for n in exceptions.__all__ if n != "OrchestratorError"])
def test_every_error_is_an_orchestrator_error(name: str) -> None:
    error = getattr(exceptions, name)
    assert issubclass(error, OrchestratorError)
    assert issubclass(error, MarketDataError)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("market_data_orchestrator", "DeploymentError"),
        ("market_data_orchestrator.deployment", "DeploymentError"),
        ("market_data_orchestrator.lifecycle", "IllegalTransitionError"),
        ("market_data_orchestrator.security", "AccessError"),
        ("market_data_orchestrator.security", "ForbiddenError"),
        ("market_data_orchestrator.security", "RateLimitedError"),
        ("market_data_orchestrator.security", "UnauthenticatedError"),
        ("market_data_orchestrator.supervisor", "SupervisorClosedError"),
    ],
)
def test_the_old_import_paths_name_the_same_class(module: str, name: str) -> None:
    imported = __import__(module, fromlist=[name])
    assert getattr(imported, name) is getattr(exceptions, name)


def test_configuration_errors_stay_configuration_errors() -> None:
    assert issubclass(exceptions.DeploymentError, ConfigurationError)
    assert issubclass(exceptions.IllegalTransitionError, ConfigurationError)
    assert issubclass(exceptions.SupervisorClosedError, RuntimeError)
