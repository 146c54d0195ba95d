"""The learned normals at /metrics: devices by state, and what the component refused or failed.

Read at each scrape from :class:`NormalDetectors` (no device in a label: counts only)."""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.normals.detectors import NormalDetectors

__all__ = ["NormalsCollector"]


class NormalsCollector(Collector):
    def __init__(self, detectors: NormalDetectors) -> None:
        self._detectors = detectors

    def collect(self) -> Iterator[Metric]:
        d = self._detectors
        devices = list(d.devices.values())
        states = GaugeMetricFamily("midbrain_hub_normals_devices", "Devices with a learned normal, by state",
                                   labels=["state"])
        active = sum(n.active for n in devices)
        states.add_metric(["active"], active)
        states.add_metric(["warming_up"], len(devices) - active)
        yield states
        yield GaugeMetricFamily("midbrain_hub_normals_alarms", "Devices whose normal's alarm is raised now",
                                value=sum(n.alarm for n in devices))
        yield CounterMetricFamily("midbrain_hub_normals_fits", "Fits and refits exported and loaded",
                                  value=sum(n.fits for n in devices))
        yield CounterMetricFamily("midbrain_hub_normals_fit_failures",
                                  "Fits that failed (logged with the device; retried later)", value=d.fit_failures)
        yield CounterMetricFamily("midbrain_hub_normals_readings_skipped",
                                  "Readings within min_spacing_s of their device's last one taken", value=d.skipped)
        yield CounterMetricFamily("midbrain_hub_normals_readings_dropped",
                                  "Readings the normals' full inbox refused", value=d.dropped)
