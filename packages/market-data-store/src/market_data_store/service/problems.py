"""One error body for every 4xx and 5xx the service answers: core's ``Problem`` (RFC 9457,
``application/problem+json``), made by ``market_data_core.api_errors`` (re-exported here
under the names the service's routes use)."""

from market_data_core.api_errors import NOT_JSON, problem
from market_data_core.api_errors import http_error_problem as http_error_handler
from market_data_core.api_errors import validation_items as validation_errors
from market_data_core.api_errors import validation_problem as validation_handler
from market_data_core.problems import Problem

__all__ = [
    "NOT_JSON",
    "Problem",
    "http_error_handler",
    "problem",
    "validation_errors",
    "validation_handler",
]
