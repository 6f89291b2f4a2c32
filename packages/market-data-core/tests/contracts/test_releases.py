"""The code is compatible with every released schema set of its major version, kept under
docs/contracts/releases/<version>/ (mdc-schemas write docs/contracts/releases/<version>)."""

from pathlib import Path

import pytest

from market_data_core import CONTRACT_VERSION
from market_data_core.compat import breaking_changes, load_schemas
from market_data_core.schemas import generate, main

RELEASES = Path(__file__).resolve().parents[4] / "docs" / "contracts" / "releases"
MAJOR = CONTRACT_VERSION.split(".")[0]
SAME_MAJOR = sorted(p for p in RELEASES.iterdir() if p.name.split(".")[0] == MAJOR)


def test_the_current_version_has_a_release_snapshot() -> None:
    assert RELEASES / CONTRACT_VERSION in SAME_MAJOR


@pytest.mark.parametrize("release", SAME_MAJOR, ids=lambda p: p.name)
def test_code_is_compatible_with_release(release: Path) -> None:
    assert breaking_changes(load_schemas(release), generate()) == []


def test_compat_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["compat", str(RELEASES / CONTRACT_VERSION)]) == 0
    assert "is compatible" in capsys.readouterr().out
    assert main(["compat", str(tmp_path / "none")]) == 2
