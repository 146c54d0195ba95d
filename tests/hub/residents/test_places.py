"""The place picker from the community's topology, and which places count as the same."""

import pytest

from contract.topology import Community
from hub.residents.requests import Places, RequestError
from hub.residents.requests.places import same_place

pytestmark = pytest.mark.unit


def test_buildings_units_and_common_areas_of_the_demo_community(community: Community) -> None:
    places = Places(community)
    ids = [p.id for p in places.all()]
    assert ids[:4] == ["b1", "b1/u1", "b1/u2", "b1/u3"] and "garage" in ids
    assert {a.name for a in community.common_areas} == {"北门", "东门", "地下车库", "儿童乐园", "中心花园"}
    assert places.get("b1/u2").building == "b1" and places.get("garage").building is None
    with pytest.raises(RequestError, match="unknown place"):
        places.get("b1/u4")


def test_a_unit_is_the_same_place_as_its_building_only() -> None:
    assert same_place("b1/u1", "b1") and same_place("b1", "b1/u1") and same_place("garage", "garage")
    assert not same_place("b1/u1", "b1/u2") and not same_place("b1/u1", "b2") and not same_place("garage", "garden")
