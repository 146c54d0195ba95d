"""Model versions replaced under a running hub: verified, swapped between scoring passes,
refused with the reason when the hash does not match."""

import asyncio
import hashlib
import json
import shutil
import time
from pathlib import Path

import aiomqtt
import httpx
import onnx
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Telemetry
from contract.topology import Community
from hub.inference import DEFAULT_MODEL_DIR
from tests.conftest import wait_until
from tests.hub.conftest import serving_hub

pytestmark = pytest.mark.real
PASSWORD = "correct horse battery"


def _publish_version(folder: Path, version: str, *, corrupt_hash: bool = False) -> str:
    """A new version of the shipped model: the same graph with different metadata (new bytes)."""
    model = onnx.load(str(DEFAULT_MODEL_DIR / "model.onnx"))
    model.doc_string = f"window_anomaly {version}"
    name = f"model-{version}.onnx"
    (folder / name).write_bytes(model.SerializeToString())
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    manifest.update(version=version, file=name, sha256="0" * 64 if corrupt_hash else digest)
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    tmp.replace(folder / "manifest.json")  # the manifest last, atomically
    return digest


async def test_a_new_model_version_is_swapped_in_between_passes_and_a_bad_one_refused(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    async with serving_hub(tmp_path, community, mosquitto, model_dir=folder, model_poll_s=0.2, stride_s=0.3) \
            as (url, hub), httpx.AsyncClient(base_url=url) as http, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        assert hub.accounts is not None
        hub.accounts.add_user("root", PASSWORD, "admin")
        stop = asyncio.Event()

        async def readings() -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                await edge.publish(topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01"), encode(Telemetry(
                    seq=seq, boot="b", ts=time.time(), device="b1-th-01",
                    metrics={"temperature": 21.0 + 0.1 * (seq % 5)})), qos=1)
                await asyncio.sleep(0.05)

        feeder = asyncio.create_task(readings())
        await wait_until(lambda: len(hub.scoring.score_log.latest("b1-th-01", "temperature", 100)) >= 3, timeout=15)  # type: ignore[union-attr]
        assert hub.scoring.model.name == "window_anomaly@2.1.0"

        digest = _publish_version(folder, "2.1.1")
        await wait_until(lambda: hub.scoring.model.name == "window_anomaly@2.1.1", timeout=10)
        assert hub.scoring.model.sha256 == digest
        swapped_at = time.time()
        await asyncio.sleep(1.0)  # passes scored by the new version

        _publish_version(folder, "2.1.2", corrupt_hash=True)
        assert (await http.post("/api/models/reload")).status_code == 401
        await http.post("/api/login", json={"name": "root", "password": PASSWORD})
        refused = (await http.post("/api/models/reload")).json()
        assert refused["loaded"] is False and "does not match manifest" in refused["refused"]
        await asyncio.sleep(0.5)
        state = (await http.get("/api/models")).json()
        stop.set()
        await feeder
        rows = hub.scoring.score_log.latest("b1-th-01", "temperature", 10_000)  # type: ignore[union-attr]
    assert state["model"] == "window_anomaly@2.1.1"  # the refused version changed nothing
    assert [e["event"] for e in state["events"]] == ["loaded", "refused"]  # refused once, not at every poll
    ends = sorted(r["window_end"] for r in rows)
    assert len(ends) == len(set(ends))  # no pass scored twice
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    assert max(gaps) < 3 * 0.3 + 0.5  # and none skipped around the swap
    assert any(e > swapped_at for e in ends) and any(e < swapped_at for e in ends)


async def test_model_reload_on_its_own_loads_a_new_version_once_and_refuses_a_bad_one(
        tmp_path: Path, community: Community) -> None:
    from hub.inference import ModelError, WindowModel
    from hub.metrics import HubMetrics
    from hub.model_reload import ModelReload
    from hub.registry import Registry
    from hub.scoring import Scoring

    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    scoring = Scoring(WindowModel(folder), Registry(community, offline_after_s=30), HubMetrics(), window_s=60,
                      threshold=0.5, cooldown_s=60, patterns={})
    reload = ModelReload(scoring, folder, scoring.metrics)
    assert (await reload.reload())["loaded"] is False  # the version already running
    digest = _publish_version(folder, "2.1.1")
    assert await reload.reload() == {"loaded": True, "model": "window_anomaly@2.1.1",
                                     "previous": "window_anomaly@2.1.0"}
    assert scoring.model.sha256 == digest and (await reload.reload())["loaded"] is False
    _publish_version(folder, "2.1.2", corrupt_hash=True)
    refused = await reload.reload()
    assert refused["loaded"] is False and "sha256" in str(refused["refused"])
    await reload.reload()  # the same bad version: refused once, not once per poll
    assert scoring.model.name == "window_anomaly@2.1.1"
    assert [e["event"] for e in reload.events] == ["loaded", "refused"]
    assert scoring.metrics.totals["model_refused"] == 1
    with pytest.raises(ModelError, match="does not run the water_leak detector"):
        reload.load_from_city("water_leak", folder)
