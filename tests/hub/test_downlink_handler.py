"""The hub's handling of city items, on a real SQLite file: once per number, and a model
file name that would leave its folder is refused before anything is written."""

import hashlib
from pathlib import Path

import pytest

from contract.downlink import (ConfigChange, DownlinkItem, DownlinkRefused, ModelUpdate, Notice, envelope,
                               new_signing_key, sign_item)
from hub.downlink import DownlinkHandler, DownlinkStore

pytestmark = pytest.mark.integration
PRIVATE, PUBLIC = new_signing_key()


def _forged_by_the_city(seq: int, version: str, onnx: bytes, file: str = "model.onnx") -> bytes:
    """An item the city's own key signed (a compromised city, or a leaked key) whose version or
    file name the contract would refuse: built without validation, as an attacker would."""
    digest = hashlib.sha256(onnx).hexdigest()
    body = ModelUpdate.model_construct(kind="model", name="window_anomaly", version=version, sha256=digest,
                                       size=len(onnx), manifest={"sha256": digest, "file": file})
    item = DownlinkItem.model_construct(v=1, seq=seq, community="c1", issued_at=1.0, expires_at=None, body=body)
    return envelope(sign_item(PRIVATE, item, onnx))


def _handler(tmp_path: Path, applied: list[object]) -> DownlinkHandler:
    def load(folder: Path) -> str:
        applied.append(folder)
        return "loaded"

    return DownlinkHandler("c1", PUBLIC, DownlinkStore(tmp_path / "hub.sqlite3"), tmp_path / "models",
                           applied.append, load)


def test_an_item_is_applied_once_and_a_repeat_gets_the_first_answer(tmp_path: Path) -> None:
    applied: list[object] = []
    handler = _handler(tmp_path, applied)
    raw = envelope(sign_item(PRIVATE, DownlinkItem(seq=1, community="c1", issued_at=1.0,
                                                    body=ConfigChange(summary_interval_s=300))))
    first = handler.handle(raw)
    assert first is not None and first.status == "applied"
    assert handler.handle(raw) == first and applied == [ConfigChange(summary_interval_s=300)]
    assert handler.counts == {"applied": 1, "refused": 0, "repeated": 1, "unreadable": 0}
    assert handler.handle(b"{not json") is None and handler.counts["unreadable"] == 1


@pytest.mark.parametrize("name", ["../../hub.sqlite3", "/etc/passwd", "..\\\\x", ".hidden", "manifest.json"])
def test_a_model_file_name_that_would_leave_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    applied: list[object] = []
    handler = _handler(tmp_path, applied)
    ack = handler.handle(_forged_by_the_city(2, "9", b"model", file=name))
    assert ack is not None and ack.status == "refused" and "unsafe file" in ack.reason
    assert applied == [] and not (tmp_path / "models").exists()


def test_a_forgery_does_not_take_the_number_of_the_genuine_item(tmp_path: Path) -> None:
    handler = _handler(tmp_path, [])
    forged = envelope(sign_item(new_signing_key()[0], DownlinkItem(seq=3, community="c1", issued_at=1.0,
                                                                    body=Notice(title="假"))))
    refused = handler.handle(forged)
    assert refused is not None and refused.status == "refused" and "bad signature" in refused.reason
    genuine = handler.handle(envelope(sign_item(PRIVATE, DownlinkItem(seq=3, community="c1", issued_at=1.0,
                                                                       body=Notice(title="真")))))
    assert genuine is not None and genuine.status == "applied"
    assert [i["body"]["title"] for i in handler.store.items("notice")] == ["真"]


# <root>/window_anomaly/000007-x/../../../../victim is <tmp_path>/victim, the folder that
# holds <root> (store/models); the others are refused by the same pattern.
@pytest.mark.parametrize("version", ["x/../../../../victim", "../../../victim", "..", "a..b", "x\\..\\y"])
def test_a_model_version_cannot_point_the_store_outside_itself(tmp_path: Path, version: str) -> None:
    """A model that fails to load has its folder removed: with a version of '../', that
    folder was outside the model store, and shutil.rmtree deleted it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    loaded: list[object] = []

    def load(name: str, folder: Path) -> str:
        loaded.append(folder)
        raise RuntimeError("does not load")

    root = tmp_path / "store" / "models"
    handler = DownlinkHandler("c1", PUBLIC, DownlinkStore(tmp_path / "hub.sqlite3"), root, lambda c: None, load)
    ack = handler.handle(_forged_by_the_city(7, version, b"not onnx"))
    assert victim.is_dir() and (victim / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]  # nothing written there either
    assert ack is not None and ack.status == "refused" and "body.model.version" in ack.reason, ack
    assert loaded == [] and not root.exists()  # refused before anything was written
    assert handler.counts["refused"] == 1


def test_the_store_never_removes_a_folder_outside_its_root(tmp_path: Path) -> None:
    from hub.downlink import inside

    root = tmp_path / "models"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    for path in (root / ".." / "outside", root, root / "window_anomaly" / ".." / ".."):
        with pytest.raises(DownlinkRefused):
            inside(root, path)
    assert inside(root, root / "window_anomaly" / "000001-2.1.0") == (root / "window_anomaly" / "000001-2.1.0").resolve()
