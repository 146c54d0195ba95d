"""Signed city items: what verifies, and each reason one does not."""

import base64
import hashlib
import json

import pytest

from contract.downlink import (ConfigChange, DownlinkItem, DownlinkRefused, ModelUpdate, Notice, SignedItem,
                               new_signing_key, open_item, sign_item)

pytestmark = pytest.mark.unit

PRIVATE, PUBLIC = new_signing_key()


def _notice(seq: int = 1, community: str = "c1", **extra: object) -> DownlinkItem:
    return DownlinkItem(seq=seq, community=community, issued_at=1000.0,
                        body=Notice(level="emergency", title="停水通知", body="明日 9:00-12:00 停水"), **extra)


def test_a_signed_item_opens_as_it_was_issued() -> None:
    item, blob = open_item(PUBLIC, sign_item(PRIVATE, _notice()), "c1", now=1000.0)
    assert item == _notice() and blob == b""
    change = DownlinkItem(seq=2, community="c1", issued_at=1.0, body=ConfigChange(summary_interval_s=300))
    assert open_item(PUBLIC, sign_item(PRIVATE, change), "c1")[0].body == ConfigChange(summary_interval_s=300)


@pytest.mark.parametrize("tamper", ["text", "signature", "other key"])
def test_an_altered_or_foreign_item_is_refused_for_its_signature(tamper: str) -> None:
    signed = sign_item(PRIVATE, _notice())
    if tamper == "text":
        signed = signed.model_copy(update={"item": signed.item.replace("停水", "停电")})
    elif tamper == "signature":
        raw = bytearray(base64.b64decode(signed.sig))
        raw[0] ^= 1
        signed = signed.model_copy(update={"sig": base64.b64encode(bytes(raw)).decode()})
    else:
        signed = sign_item(new_signing_key()[0], _notice())
    with pytest.raises(DownlinkRefused, match="bad signature"):
        open_item(PUBLIC, signed, "c1")


def test_an_item_for_another_community_or_past_its_time_is_refused() -> None:
    with pytest.raises(DownlinkRefused, match="not this one"):
        open_item(PUBLIC, sign_item(PRIVATE, _notice(community="c2")), "c1")
    with pytest.raises(DownlinkRefused, match="expired"):
        open_item(PUBLIC, sign_item(PRIVATE, _notice(expires_at=1500.0)), "c1", now=2000.0)


def test_a_model_opens_only_with_the_file_whose_hash_was_signed() -> None:
    onnx = b"\x08\x07model bytes"
    digest = hashlib.sha256(onnx).hexdigest()
    item = DownlinkItem(seq=3, community="c1", issued_at=1.0, body=ModelUpdate(
        version="9.0.0", sha256=digest, size=len(onnx), manifest={"sha256": digest, "file": "model.onnx"}))
    signed = sign_item(PRIVATE, item, onnx)
    assert open_item(PUBLIC, signed, "c1")[1] == onnx
    swapped = signed.model_copy(update={"blob": base64.b64encode(b"another model").decode()})
    with pytest.raises(DownlinkRefused, match="is not the signed"):
        open_item(PUBLIC, swapped, "c1")
    lying = DownlinkItem(seq=4, community="c1", issued_at=1.0, body=ModelUpdate(
        version="9.0.1", sha256=digest, size=len(onnx), manifest={"sha256": "0" * 64}))
    with pytest.raises(DownlinkRefused, match="manifest"):
        open_item(PUBLIC, sign_item(PRIVATE, lying, onnx), "c1")


def test_signed_but_not_an_item_says_where() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = json.dumps({"seq": 1, "community": "c1", "issued_at": 1.0, "body": {"kind": "reboot"}})
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(PRIVATE))
    signed = SignedItem(item=text, sig=base64.b64encode(key.sign(text.encode())).decode())
    with pytest.raises(DownlinkRefused, match="body"):
        open_item(PUBLIC, signed, "c1")
