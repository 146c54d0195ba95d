"""The residents' requests' counters at /metrics: counts only, no ticket, text or address."""

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.received = PromCounter("midbrain_hub_resident_requests", "Residents' requests taken, by channel",
                                    ["channel"], registry=r)
        self.emergencies = PromCounter("midbrain_hub_resident_emergencies", "Residents' requests triaged as "
                                       "emergencies (a critical alert raised at once)", registry=r)
        self.queued = PromCounter("midbrain_hub_resident_requests_queued", "Requests left to a supervisor's "
                                  "triage queue (low confidence)", registry=r)
        self.merged = PromCounter("midbrain_hub_resident_requests_merged", "Requests merged into an active work "
                                  "order of the same problem", registry=r)
        self.refused = PromCounter("midbrain_hub_resident_requests_refused", "Residents' requests and actions "
                                   "refused, by reason", ["reason"], registry=r)
        self.pin_failures = PromCounter("midbrain_hub_resident_pin_failures", "Wrong or unknown ticket+PIN "
                                        "(and attempts refused while limited)", registry=r)
        self.anonymised = PromCounter("midbrain_hub_resident_requests_anonymised", "Closed requests whose personal "
                                      "fields were cleared after the retention period", registry=r)
