"""``mdc-schemas``: what a user sees on the command line."""

from importlib.metadata import version

import pytest

from market_data_core import CONTRACT_VERSION
from market_data_core.schemas import main


def test_version_names_the_distribution_and_the_contract(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    expected = f"market-data-core {version('market-data-core')} (contract {CONTRACT_VERSION})\n"
    assert capsys.readouterr().out == expected
