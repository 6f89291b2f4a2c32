"""``import market_data_core`` imports pydantic and nothing else outside the stdlib."""

import subprocess
import sys

ALLOWED = {
    "market_data_core",
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "annotated_types",
    "typing_inspection",
}
PROBE = (
    "import sys, market_data_core;"
    "top = {m.split('.')[0] for m in sys.modules};"
    "print(' '.join(sorted(top - set(sys.stdlib_module_names)"
    " - {m for m in top if m.startswith('_')})))"
)


def _third_party_after(statement: str) -> set[str]:
    code = PROBE.replace("import sys, market_data_core;", f"import sys; {statement};")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_import_pulls_only_pydantic() -> None:
    assert _third_party_after("import market_data_core") <= ALLOWED


def test_transports_package_does_not_import_redis() -> None:
    assert "redis" not in _third_party_after("import market_data_core.transports")


def test_redis_transport_imports_redis() -> None:
    assert "redis" in _third_party_after("import market_data_core.transports.redis")
