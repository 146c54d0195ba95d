"""A rejected reading does not use up its sequence number: the corrected resend is stored."""

import json
from pathlib import Path

import httpx
import pytest

from contract import topics
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub
from tests.hub.test_hub_mqtt import pub

pytestmark = pytest.mark.real

TOPIC = topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01")


def _reading(seq: int, temperature: float) -> str:
    return json.dumps({"v": 1, "seq": seq, "boot": "manual-7", "ts": 1764230000.0 + seq, "device": "b1-th-01",
                       "metrics": {"temperature": temperature}})


async def test_corrected_resend_with_the_same_seq_is_stored(tmp_path: Path, community: Community,
                                                             mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        pub(mosquitto, TOPIC, _reading(5, 900.0))  # out of range: a dead letter

        async def dead() -> list[dict[str, object]] | None:
            got = (await http.get("/api/dead-letters")).json()
            return got or None

        letters = await wait_until(dead)
        assert [d["reason"] for d in letters] == ["out-of-range"]

        pub(mosquitto, TOPIC, _reading(5, 21.5))  # the same seq, corrected

        async def stored() -> list[dict[str, object]] | None:
            got = (await http.get("/api/telemetry", params={"device": "b1-th-01"})).json()
            return got or None

        rows = await wait_until(stored)
        assert [(r["seq"], r["value"]) for r in rows] == [(5, 21.5)]
        assert hub.metrics.totals["duplicates"] == 0

        pub(mosquitto, TOPIC, _reading(5, 21.5))  # now a true redelivery: dropped once stored

        await wait_until(lambda: hub.metrics.totals["duplicates"] == 1)
        assert len((await http.get("/api/telemetry", params={"device": "b1-th-01"})).json()) == 1
