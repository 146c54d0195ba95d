"""Seeded signal generators for every device class, with fault injection.

The same generators feed the MQTT and serial device simulators and the training script
of the hub's anomaly model, so the model learns the signals the demo produces.

Fault kinds: ``spike`` (isolated large excursions), ``stuck`` (value frozen), ``drift``
(slowly growing offset), ``fire`` (fast temperature / smoke rise), ``dropout`` (the
device stays silent; handled by the caller through :meth:`Device.silent`).
"""

import math
import random
from dataclasses import dataclass

from contract.classes import DeviceClass


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start_s: float
    duration_s: float
    magnitude: float = 1.0

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


class Device:
    """One simulated device: ``sample(t)`` gives its readings ``t`` seconds after start."""

    def __init__(self, device_class: DeviceClass, seed: int, faults: tuple[Fault, ...] = ()) -> None:
        self.device_class = device_class
        self.faults = faults
        self._rng = random.Random(seed)
        r = self._rng
        self._phase = r.uniform(0, 2 * math.pi)
        self._level = {
            "temperature": r.uniform(18, 26),
            "humidity": r.uniform(40, 60),
            "smoke_density": r.uniform(0.2, 0.8),
            "flow_lpm": r.uniform(15, 40),
            "fill_pct": r.uniform(5, 60),
            "pm2_5": r.uniform(15, 60),
        }
        self._walk = 0.0
        self._stuck: dict[str, dict[str, float]] = {}  # fault kind -> frozen readings
        self._total_m3 = r.uniform(1000, 5000)
        self._energy_kwh = 2 * self._total_m3  # derived, not drawn: the other classes' sequences stay as trained
        self._floor = 1
        self._sessions = 0
        self._last_t = 0.0

    def silent(self, t: float) -> bool:
        return any(f.kind == "dropout" and f.active(t) for f in self.faults)

    def sample(self, t: float) -> dict[str, float]:
        dt = max(0.0, t - self._last_t)
        self._last_t = t
        r = self._rng
        self._walk = 0.98 * self._walk + r.gauss(0, 0.05)
        values = self._base(t, dt)
        for fault in self.faults:
            if fault.active(t):
                values = self._apply(fault, t, values)
            else:
                self._stuck.pop(fault.kind, None)
        return {k: round(v, 3) for k, v in values.items()}

    # -- normal behaviour ----------------------------------------------------------

    def _analog(self, name: str, t: float, amplitude: float, noise: float, period_s: float = 600.0) -> float:
        level = self._level[name]
        return level + amplitude * math.sin(2 * math.pi * t / period_s + self._phase) + self._walk * amplitude \
            + self._rng.gauss(0, noise)

    def _base(self, t: float, dt: float) -> dict[str, float]:
        c, r = self.device_class, self._rng
        if c is DeviceClass.TEMP_HUMIDITY:
            return {"temperature": self._analog("temperature", t, 0.6, 0.08),
                    "humidity": self._analog("humidity", t, 2.0, 0.3)}
        if c is DeviceClass.SMOKE:
            return {"smoke_density": max(0.0, self._analog("smoke_density", t, 0.05, 0.02)), "alarm": 0.0}
        if c is DeviceClass.WATER_METER:
            flow = max(0.0, self._analog("flow_lpm", t, 5.0, 0.8))
            self._total_m3 += flow * dt / 60_000.0
            return {"flow_lpm": flow, "total_m3": self._total_m3, "valve_open": 1.0, "battery_low": 0.0}
        if c is DeviceClass.ELEVATOR:
            if r.random() < 0.3:
                self._floor = r.randint(-1, 18)
            running = float(r.random() < 0.5)
            return {"running": running, "floor": float(self._floor),
                    "door_open": float(not running and r.random() < 0.5), "fault_code": 0.0}
        if c is DeviceClass.DOOR_ACCESS:
            return {"opens": float(r.randint(0, 6)), "forced": 0.0}
        if c is DeviceClass.BIN_FILL:
            self._level["fill_pct"] = min(100.0, self._level["fill_pct"] + 0.01 * dt)
            return {"fill_pct": min(100.0, max(0.0, self._level["fill_pct"] + r.gauss(0, 0.4)))}
        if c is DeviceClass.AIR_QUALITY:
            pm25 = max(0.0, self._analog("pm2_5", t, 4.0, 1.0))
            return {"pm1_0": round(pm25 * 0.7), "pm2_5": round(pm25), "pm10": round(pm25 * 1.4)}
        if c is DeviceClass.KIOSK:
            self._sessions += r.randint(0, 2)
            return {"sessions": float(self._sessions), "paper_ok": 1.0}
        if c is DeviceClass.ELECTRICITY_METER:
            power = max(0.05, 0.8 + 0.3 * math.sin(2 * math.pi * t / 3600 + self._phase) + r.gauss(0, 0.05))
            self._energy_kwh += power * dt / 3600
            voltage = r.gauss(221.0, 1.5)
            return {"energy_kwh": self._energy_kwh, "voltage_v": voltage, "current_a": power * 1000 / voltage,
                    "power_kw": power}
        raise ValueError(f"no generator for {c}")

    # -- faults --------------------------------------------------------------------

    def _apply(self, fault: Fault, t: float, values: dict[str, float]) -> dict[str, float]:
        scored = [k for k in values if k in self._level]
        out = dict(values)
        if fault.kind == "stuck":
            frozen = self._stuck.setdefault(fault.kind, dict(values))
            for k in scored:
                out[k] = frozen[k]
        elif fault.kind == "spike":
            if self._rng.random() < 0.5:
                for k in scored:
                    out[k] = values[k] + fault.magnitude * (3.0 + 0.5 * abs(values[k]))
        elif fault.kind == "drift":
            elapsed = t - fault.start_s
            for k in scored:
                out[k] = values[k] + fault.magnitude * 0.02 * elapsed * (1 + 0.02 * abs(self._level[k]))
        elif fault.kind == "fire":
            elapsed = t - fault.start_s
            if "temperature" in out:
                out["temperature"] = values["temperature"] + 0.8 * elapsed
                out["humidity"] = max(5.0, values["humidity"] - 0.4 * elapsed)
            if "smoke_density" in out:
                out["smoke_density"] = values["smoke_density"] + 0.5 * elapsed
                out["alarm"] = float(out["smoke_density"] > 8)
            for k in scored:
                if k not in ("temperature", "humidity", "smoke_density"):
                    out[k] = values[k] + 0.8 * elapsed
        return out
