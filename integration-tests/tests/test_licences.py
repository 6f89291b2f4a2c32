"""Every package says its licence and ships it: the wheels carry LICENSE and the metadata a
packaging tool reads (License-Expression, Project-URL, authors, classifiers); the example
data's own licence and attribution travel with the data."""

from __future__ import annotations

import email
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "market-data-core",
    "market-data-store",
    "market-data-pipeline",
    "market-data-orchestrator",
]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    uv = shutil.which("uv")
    assert uv is not None, "these tests build wheels with uv: pip install uv"
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for package in PACKAGES:
        subprocess.run(
            [uv, "build", "--quiet", "--package", package, "--wheel", "--out-dir", str(out)],
            cwd=ROOT, check=True, timeout=300,
        )  # fmt: skip
        (built[package],) = out.glob(f"{package.replace('-', '_')}-*.whl")
    return built


@pytest.mark.parametrize("package", PACKAGES)
def test_each_wheel_carries_its_licence_and_says_where_it_comes_from(
    wheels: dict[str, Path], package: str
) -> None:
    with zipfile.ZipFile(wheels[package]) as wheel:
        names = wheel.namelist()
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(licence).decode().startswith("MIT License")
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["License-Expression"] == "MIT"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= urls.keys()
    assert package in urls["Source"]
    assert metadata["Author"]
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression says it
    assert (ROOT / "packages" / package / "LICENSE").read_text() == wheel_licence(wheels[package])


def wheel_licence(path: Path) -> str:
    with zipfile.ZipFile(path) as wheel:
        (licence,) = [n for n in wheel.namelist() if n.endswith("licenses/LICENSE")]
        return wheel.read(licence).decode()


def test_the_example_data_carries_its_own_licence_and_attribution() -> None:
    data = ROOT / "examples" / "data"
    notice = (data / "LICENSE").read_text()
    assert "Lesser General Public License" in notice
    assert "nautechsystems/nautilus_trader" in notice
    assert (
        (data / "LICENSE.LGPL-3.0")
        .read_text()
        .lstrip()
        .startswith("GNU LESSER GENERAL PUBLIC LICENSE")
    )
    assert "GNU GENERAL PUBLIC LICENSE" in (data / "LICENSE.GPL-3.0").read_text()[:200]
    readme = (data / "README.md").read_text()
    files = [
        p for p in data.iterdir() if p.is_file() and not p.name.startswith(("LICENSE", "README"))
    ]
    assert files
    missing = [p.name for p in files if f"`{p.name}`" not in readme]
    assert not missing, f"examples/data/README.md does not attribute {missing}"
    assert "examples/data" in (ROOT / "LICENSE").read_text()  # the MIT licence says it is not
