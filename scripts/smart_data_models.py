"""Extract the attribute definitions of the Smart Data Models the bridge sends as NGSI-LD
(contract/ngsild.py) from the pysmartdatamodels package, which carries them offline, into
contract/smartdatamodels.json. The runtime reads that file; pysmartdatamodels itself (and
its many dependencies) is needed only here and in the test that checks the file is what
this script writes.

    python scripts/smart_data_models.py            # rewrite contract/smartdatamodels.json
    python scripts/smart_data_models.py --check    # exit 1 if it differs
"""

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "contract" / "smartdatamodels.json"
MODELS = {  # data model -> its subject (repository)
    "KeyPerformanceIndicator": "dataModel.KeyPerformanceIndicator",
    "DeviceMeasurement": "dataModel.Device",
    "AirQualityObserved": "dataModel.Environment",
    "WaterConsumptionObserved": "dataModel.WaterConsumption",
}
# Sub-attributes of Address and of GeoJSON geometries, listed flat by the package.
NESTED = {"addressCountry", "addressLocality", "addressRegion", "district", "postOfficeBoxNumber", "postalCode",
          "streetAddress", "streetNr", "bbox", "coordinates"}


def extract() -> dict[str, object]:
    from importlib.metadata import version

    from pysmartdatamodels import pysmartdatamodels as sdm

    attributes = sdm._load_attributes_db()  # the package's own offline database (no network)
    metadata = json.loads((Path(sdm.__file__).parent / "model-assets" / "datamodels_metadata.json").read_text())
    out: dict[str, object] = {"source": f"pysmartdatamodels {version('pysmartdatamodels')}", "models": {}}
    for model, subject in MODELS.items():
        meta = next(m for m in metadata if m["dataModel"] == model and m["subject"] == subject)
        attrs: dict[str, dict[str, object]] = {}
        for a in attributes:
            if a.get("dataModel") != model or a.get("repoName") != subject or a["property"] in NESTED:
                continue
            if a["property"] in ("id", "type"):
                continue
            # "It can be of any type" (kpiValue): the package records such an attribute as a string.
            any_type = "any type" in str(a.get("description", "")).lower()
            attrs[a["property"]] = {"ngsi": a.get("typeNGSI") or "Property",
                                    "type": None if any_type else a.get("type"),
                                    **({"units": a["units"]} if a.get("units") else {})}
        out["models"][model] = {  # type: ignore[index]
            "subject": subject, "version": meta["version"], "context": meta["@context"],
            "required": [r for r in meta.get("required", []) if r not in ("id", "type")],
            "attributes": dict(sorted(attrs.items())),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = json.dumps(extract(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is not what pysmartdatamodels gives: run python scripts/smart_data_models.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
