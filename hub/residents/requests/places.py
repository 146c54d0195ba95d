"""The places a resident may pick: the community's buildings, their units (``b1/u1``..) and its
common areas, from the topology the registry was built from."""

from dataclasses import dataclass

from contract.topology import Community
from hub.residents.requests.errors import RequestError


@dataclass(frozen=True)
class Place:
    id: str  # "b1", "b1/u2", or a common area's id
    kind: str  # building | unit | area
    name: str
    name_en: str
    building: str | None  # the building a work order at this place is filed under


class Places:
    def __init__(self, community: Community) -> None:
        places: list[Place] = []
        for b in community.buildings:
            places.append(Place(b.id, "building", b.name, b.id, b.id))
            for n in range(1, b.units + 1):
                places.append(Place(f"{b.id}/u{n}", "unit", f"{b.name}{n}单元", f"{b.id} unit {n}", b.id))
        places += [Place(a.id, "area", a.name, a.name_en or a.id, None) for a in community.common_areas]
        self._by_id = {p.id: p for p in places}

    def all(self) -> list[Place]:
        return list(self._by_id.values())

    def get(self, place_id: str) -> Place:
        place = self._by_id.get(place_id)
        if place is None:
            raise RequestError("请选择小区里的一个地点", f"unknown place {place_id[:64]!r}: pick one from /api/places",
                               422, "place")
        return place


def same_place(a: str, b: str) -> bool:
    """The same place for duplicates: equal, or a unit and its own building."""
    return a == b or a.split("/", 1)[0] == b or b.split("/", 1)[0] == a
