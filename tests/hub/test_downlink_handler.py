"""The hub's handling of city items, on a real SQLite file: once per number, and a model
file name that would leave its folder is refused before anything is written."""

import hashlib
from pathlib import Path

import pytest

from contract.downlink import (ConfigChange, DownlinkItem, ModelUpdate, Notice, envelope,
                               new_signing_key, sign_item)
from hub.downlink import DownlinkHandler, DownlinkStore

pytestmark = pytest.mark.integration
PRIVATE, PUBLIC = new_signing_key()


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
    onnx = b"model"
    digest = hashlib.sha256(onnx).hexdigest()
    item = DownlinkItem(seq=2, community="c1", issued_at=1.0, body=ModelUpdate(
        version="9", sha256=digest, size=len(onnx), manifest={"sha256": digest, "file": name}))
    ack = handler.handle(envelope(sign_item(PRIVATE, item, onnx)))
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
