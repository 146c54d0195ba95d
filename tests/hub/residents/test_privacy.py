"""No resident's words, phone, household code, ticket or PIN in the summary the hub publishes."""

from pathlib import Path

import pytest

from contract.topology import Community
from hub.residents.requests import Intake, NewRequest, Places, RequestStore
from hub.residents.requests.identity import Identity, load_or_create_key
from hub.residents.requests.metrics import RequestMetrics
from hub.residents.triage.keywords import KeywordTriage
from hub.settings import ResidentsSettings
from tests.hub.components import summaries

pytestmark = pytest.mark.integration


async def test_no_resident_data_in_the_summary(tmp_path: Path, community: Community) -> None:
    s, orders = summaries(tmp_path, community)
    intake = Intake(RequestStore(tmp_path / "hub.sqlite3"), orders, Places(community), KeywordTriage(),
                    Identity(load_or_create_key(tmp_path / "k")), ResidentsSettings(),
                    RequestMetrics(s.metrics.registry), raise_alert=s.alerting.raise_resident_alert)
    secrets = ["13812345678", "HH-0301", "王阿姨家着火了", "楼道灯坏了很久"]
    fire = intake.submit(NewRequest("kiosk", "王阿姨家着火了", "b1/u2", "phone", "HH-0301", "13812345678"))
    lamp = intake.submit(NewRequest("phone", "楼道灯坏了很久", "b2/u1"))
    await s.close_interval(final=True)
    [(_, body)] = s.store.unpublished_summaries()
    text = body.decode()
    assert '"opened":2' in text.replace(" ", "")  # the orders are counted ...
    for secret in [*secrets, fire.ticket, lamp.ticket, fire.pin, lamp.pin, "place:"]:
        assert secret not in text  # ... and nothing of who or what
