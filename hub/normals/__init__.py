"""Per-device learned normals in the hub (issue 19): warm-up, fits and refits of
hub.normal's PCA T²+Q per device, thresholds from a false-alarm budget, each fit exported
to ONNX and scored through onnxruntime, rising alarms raised as ``unusual`` alerts.

=================  ===============================================================
module             job
=================  ===============================================================
budget             alerts per week -> a per-reading share; alerts spent per week
fitting            one fit: budget, hub.normal.fit_normal, widening, held-out evaluation
export             the ONNX graph of T² and Q, its manifest, folders, verified loading
device             one device: rows, ring buffer, warm-up, refits, its stream
detectors          the component: the inbox ingest appends to, the scoring pass, status
=================  ===============================================================
"""

from hub.normals.detectors import KIND, NormalAlert, NormalDetectors
from hub.normals.export import NormalStore

__all__ = ["KIND", "NormalAlert", "NormalDetectors", "NormalStore"]
