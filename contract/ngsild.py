"""NGSI-LD entities for a FIWARE context broker, from a community summary, in Smart Data
Models: what the bridge sends when ``bridge.transport = "ngsi-ld"``.

Per summary window (entity ids carry the community and the window, so that a revision of
a window replaces its entities on upsert):

- ``KeyPerformanceIndicator``: online share of devices, alerts, critical alerts, work orders
  overdue, median minutes to resolve, residents' requests (one entity each);
- ``AirQualityObserved``: the community's temperature, relative humidity, PM2.5 and PM10;
- ``WaterConsumptionObserved``: water used in the window (m³);
- ``DeviceMeasurement``: electricity used in the window (kWh).

Only these attributes are built (``ATTRIBUTES``: the NGSI-LD egress allow-list), only from
a :class:`contract.city.CommunitySummary` (already small-cell checked), and every entity is
checked against the models' attribute definitions (contract/smartdatamodels.json, which
scripts/smart_data_models.py extracts from the pysmartdatamodels package).
"""

import json
import time
from pathlib import Path
from typing import Any

from contract.city import CommunitySummary

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SMART_DATA_MODELS: dict[str, Any] = json.loads((Path(__file__).with_name("smartdatamodels.json")).read_text())["models"]
UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"
CONTENT_TYPE = "application/ld+json"

# Everything an entity of each type may carry (besides id, type and @context).
ATTRIBUTES: dict[str, frozenset[str]] = {
    "KeyPerformanceIndicator": frozenset({"name", "description", "kpiValue", "calculationPeriod", "category",
                                          "areaServed", "dataProvider", "source"}),
    "AirQualityObserved": frozenset({"dateObserved", "location", "areaServed", "temperature", "relativeHumidity",
                                     "pm25", "pm10", "dataProvider", "source"}),
    "WaterConsumptionObserved": frozenset({"waterConsumption", "areaServed", "description", "dataProvider",
                                           "source", "location"}),
    "DeviceMeasurement": frozenset({"measurementType", "numValue", "unit", "dateObserved", "areaServed",
                                    "description", "dataProvider", "source"}),
}
_KPIS = {  # entity suffix -> (name, description, how to read it from a summary)
    "online-share": ("设备在线率 Device online share", "share of the community's devices online at the window's end"),
    "alerts": ("告警数 Alerts", "alerts raised in the window"),
    "critical-alerts": ("严重告警 Critical alerts", "critical alerts raised in the window"),
    "work-orders-overdue": ("超时工单 Overdue work orders", "work orders past their deadline at the window's end"),
    "minutes-to-resolve": ("处置时长 Median minutes to resolve", "median minutes to resolve, over orders resolved in it"),
    "requests": ("居民诉求 Residents' requests", "residents' requests at kiosks in the window (small counts merged)"),
}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(round(ts % 1 * 1000)) % 1000:03d}Z"


def _prop(value: object, observed_at: str | None = None, unit: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"type": "Property", "value": value}
    if observed_at is not None:
        out["observedAt"] = observed_at
    if unit is not None:
        out["unitCode"] = unit
    return out


def _kpi_values(s: CommunitySummary) -> dict[str, float | int | None]:
    orders = s.work_orders
    return {
        "online-share": round(s.online / s.devices, 4) if s.devices else None,
        "alerts": sum(s.alerts.values()),
        "critical-alerts": s.alerts_by_severity.get("critical", 0),
        "work-orders-overdue": orders.overdue if orders is not None else None,
        "minutes-to-resolve": orders.median_minutes_to_resolve if orders is not None else None,
        "requests": sum(s.requests.values()),
    }


def entities(summary: CommunitySummary, location: tuple[float, float] | None, provider: str = "midbrain") -> list[
        dict[str, Any]]:
    """The NGSI-LD entities (normalized form) of one community summary. ``location`` is the
    community's (longitude, latitude): public, and what AirQualityObserved requires."""
    c, window = summary.community, str(int(round(summary.window_start * 1000)))
    if summary.period_s:  # a roll-up: entities of their own, beside the interval window's
        window += f"-p{summary.period_s}"
    observed = _iso(summary.window_end)
    common = {"areaServed": _prop(c), "dataProvider": _prop(provider), "source": _prop("midbrain community mid-brain")}
    out: list[dict[str, Any]] = []

    def entity(kind: str, suffix: str, **attrs: object) -> None:
        out.append({"id": f"urn:ngsi-ld:{kind}:{c}:{suffix}:{window}", "type": kind,
                    **{k: v for k, v in attrs.items()}, **{k: v for k, v in common.items() if k in ATTRIBUTES[kind]},
                    "@context": [SMART_DATA_MODELS[kind]["context"], CORE_CONTEXT]})

    for suffix, value in _kpi_values(summary).items():
        if value is None:
            continue
        name, description = _KPIS[suffix]
        entity("KeyPerformanceIndicator", suffix, name=_prop(name), description=_prop(description),
               kpiValue=_prop(value, observed), category=_prop(["quantitative"]),
               calculationPeriod=_prop({"from": _iso(summary.window_start), "to": observed}))
    env = summary.environment
    air = {"temperature": env.get("temperature"), "relativeHumidity": env.get("humidity"),
           "pm25": env.get("pm2_5"), "pm10": env.get("pm10")}
    if location is not None and any(v is not None for v in air.values()):
        entity("AirQualityObserved", "environment", dateObserved=_prop(observed),
               location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(location)}},
               **{k: _prop(round(v, 3), observed) for k, v in air.items() if v is not None})
    use = summary.utilities
    if use is not None and use.water_meters:
        entity("WaterConsumptionObserved", "water", waterConsumption=_prop(use.water_m3, observed, "MTQ"),
               description=_prop(f"water used by the community's {use.water_meters} metered households in the window"))
    if use is not None and use.electricity_meters:
        entity("DeviceMeasurement", "electricity", measurementType=_prop("electricity consumption"),
               numValue=_prop(use.electricity_kwh, observed, "KWH"), unit=_prop("KWH"), dateObserved=_prop(observed),
               description=_prop(f"electricity used by the community's {use.electricity_meters} metered households"))
    return out


_JSON_TYPES = {"number": (int, float), "string": (str,), "array": (list,), "object": (dict,), "boolean": (bool,)}


def check(entity: dict[str, Any]) -> list[str]:
    """What is wrong with an entity against its Smart Data Model: unknown type, attribute
    not in the model (or not on our allow-list), wrong NGSI-LD kind, wrong value type,
    missing required attribute, missing context. Empty if nothing."""
    kind = entity.get("type")
    model = SMART_DATA_MODELS.get(str(kind))
    if model is None or kind not in ATTRIBUTES:
        return [f"type {kind!r} is not one of {sorted(ATTRIBUTES)}"]
    problems = []
    if not str(entity.get("id", "")).startswith(f"urn:ngsi-ld:{kind}:"):
        problems.append(f"id {entity.get('id')!r} is not urn:ngsi-ld:{kind}:...")
    context = entity.get("@context")
    if not isinstance(context, list) or model["context"] not in context:
        problems.append(f"@context does not name the model's context {model['context']}")
    for name, attr in entity.items():
        if name in ("id", "type", "@context"):
            continue
        spec = model["attributes"].get(name)
        if spec is None:
            problems.append(f"{kind}.{name} is not an attribute of the model")
            continue
        if name not in ATTRIBUTES[kind]:
            problems.append(f"{kind}.{name} is not on the egress allow-list")
        if not isinstance(attr, dict) or attr.get("type") != spec["ngsi"]:
            problems.append(f"{kind}.{name} must be a {spec['ngsi']}")
            continue
        value = attr.get("value")
        wanted = spec["type"]
        if spec["ngsi"] == "Property" and wanted is not None and (
                not isinstance(value, _JSON_TYPES.get(wanted, (object,)))
                or (wanted == "number" and isinstance(value, bool))):
            problems.append(f"{kind}.{name} must hold a {wanted}, not {type(value).__name__}")
    problems += [f"{kind}.{r} is required" for r in model["required"] if r not in entity]
    return problems
