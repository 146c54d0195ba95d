"""The lock files: every install comes from them, so they must agree with pyproject.toml and each other."""

import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M)


def pins(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    text = (REPO / "requirements" / name).read_text()
    found = {m[1].lower(): (m[2], frozenset(re.findall(r"sha256:([0-9a-f]{64})", m[3]))) for m in PIN.finditer(text)}
    assert len(found) == len(re.findall(r"^[A-Za-z0-9]", text, re.M)), f"{name}: a pin without hashes"
    return found


def normalise(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_runtime_lock_is_the_all_lock_less_the_test_and_training_extras() -> None:
    everything, runtime = pins("all.lock"), pins("runtime.lock")
    assert runtime.items() <= everything.items()  # same versions, same hashes
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert normalise(requirement) in runtime, requirement
    for extra in ("test", "train"):
        for requirement in project["optional-dependencies"][extra]:
            assert normalise(requirement) in everything, requirement
    assert not {"pytest", "scikit-learn", "skl2onnx"} & set(runtime)
    assert "onnx" in runtime  # the hub builds ONNX graphs of its learned normals


def test_the_build_backend_is_pinned_for_the_editable_install() -> None:
    assert "setuptools" in pins("runtime.lock") and "setuptools" in pins("all.lock")


def test_set_up_installs_only_from_the_lock() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    installs = [line.strip() for line in setup.splitlines() if " install " in line and not line.lstrip().startswith("#")]
    assert installs == ['"${pip[@]}" install --require-hashes --no-deps -r "$lock"',
                        '"${pip[@]}" install --no-deps --no-build-isolation -e .']
