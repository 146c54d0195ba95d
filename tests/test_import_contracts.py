"""The import-cycle contract in pyproject.toml covers every package and catches a cycle of
two modules, even one behind ``if TYPE_CHECKING``. (``./scripts/test`` runs lint-imports
on our packages.)"""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> tuple[list[str], list[dict[str, object]]]:
    linter = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return linter["root_packages"], linter["contracts"]


@pytest.mark.unit
def test_the_cycle_contract_covers_every_package() -> None:
    roots, contracts = _contracts()
    acyclic = [c for c in contracts if c["type"] == "acyclic_siblings"]
    assert len(acyclic) == 1 and sorted(acyclic[0]["ancestors"]) == sorted(roots)  # type: ignore[call-overload]


@pytest.mark.real
def test_the_cycle_contract_catches_a_two_module_cycle(tmp_path: Path) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "api.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                    "    from cyclic.service import Bridge\n")
    (package / "service.py").write_text("from cyclic.api import TYPE_CHECKING\n\n\nclass Bridge:\n    pass\n")
    (tmp_path / "pyproject.toml").write_text('[tool.importlinter]\nroot_packages = ["cyclic"]\n\n'
                                             '[[tool.importlinter.contracts]]\nname = "No cycles"\n'
                                             'type = "acyclic_siblings"\nancestors = ["cyclic"]\n')
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cycles are allowed in cyclic." in result.stdout
    assert "- .api -> .service (1 import)" in result.stdout or "- .service -> .api (1 import)" in result.stdout
