"""Seeded signal generators for every device class, with fault injection.

The same generators feed the MQTT and serial device simulators and the training script
of the hub's anomaly model, so the model learns the signals the demo produces.

Fault kinds: ``spike`` (isolated large excursions), ``stuck`` (value frozen), ``drift``
(slowly growing offset), ``fire`` (fast temperature / smoke rise), ``dropout`` (the
device stays silent; handled by the caller through :meth:`Device.silent`); for water
meters ``leak`` (a continuous base flow, day and night); for elevators ``car_stuck`` (the
car reports running but stays on one floor, doors shut: stuck between floors) and
``door_fault`` (the car stands with its doors opening and closing over and over).

Household water use and elevator traffic follow the local time of day (China, UTC+8):
``Device(start_epoch=...)`` sets the wall-clock time of ``t = 0``.
"""

import math
import random
from dataclasses import dataclass

from contract.classes import DeviceClass

UTC_OFFSET_S = 8 * 3600  # Asia/Shanghai, no daylight saving
NIGHT_HOURS = (23, 5)  # local hours when a household draws next to no water


def local_hour(epoch: float) -> float:
    return ((epoch + UTC_OFFSET_S) % 86400) / 3600.0


def is_night(hour: float) -> bool:
    start, end = NIGHT_HOURS
    return hour >= start or hour < end


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

    def __init__(self, device_class: DeviceClass, seed: int, faults: tuple[Fault, ...] = (),
                 start_epoch: float | None = None) -> None:
        self.device_class = device_class
        self.faults = faults
        self.start_epoch = start_epoch
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
        self._car: dict[str, float] = {"target": 1.0, "dwell": 0.0, "next_move": 0.0}
        self._draw = (0.0, 0.0)  # household water: (flow L/min, until t)
        self._dt = 0.0  # since the previous sample
        self._sessions = 0
        self._last_t = 0.0

    def silent(self, t: float) -> bool:
        return any(f.kind == "dropout" and f.active(t) for f in self.faults)

    def sample(self, t: float) -> dict[str, float]:
        dt = self._dt = max(0.0, t - self._last_t)
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
            return self._household_water(t, dt)
        if c is DeviceClass.ELEVATOR:
            return self._elevator(t, dt)
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

    def _hour(self, t: float) -> float:
        # Without a start time, t counts from local midnight, as a training series does.
        return local_hour((self.start_epoch if self.start_epoch is not None else -UTC_OFFSET_S) + t)

    def _household_water(self, t: float, dt: float) -> dict[str, float]:
        """A flat's meter: nothing flows between draws (taps, showers, flushes), and at
        night next to nothing is drawn at all."""
        r = self._rng
        flow, until = self._draw
        if t >= until:
            flow = 0.0
            per_s = 1 / 7200 if is_night(self._hour(t)) else 1 / 420  # draws start this often
            if r.random() < 1.0 - math.exp(-per_s * max(dt, 1.0)):
                flow, until = r.uniform(3.0, 12.0), t + r.uniform(20.0, 300.0)
            self._draw = (flow, until)
        self._total_m3 += flow * dt / 60_000.0
        return {"flow_lpm": flow, "total_m3": self._total_m3, "valve_open": 1.0, "battery_low": 0.0}

    def _elevator(self, t: float, dt: float) -> dict[str, float]:
        """A car that takes calls: it travels a floor every 2 s, stops with its doors open
        for 6-12 s, then waits closed for the next call (more calls by day than at night)."""
        r, car = self._rng, self._car
        running = door = 0.0
        if self._floor != car["target"]:
            if t >= car["next_move"]:
                self._floor += 1 if car["target"] > self._floor else -1
                car["next_move"] = t + 2.0
                if self._floor == car["target"]:
                    car["dwell"] = t + r.uniform(6.0, 12.0)
            running = float(self._floor != car["target"])
        elif t < car["dwell"]:
            door = 1.0
        else:
            calls_per_s = 1 / 60 if is_night(self._hour(t)) else 1 / 15
            if r.random() < 1.0 - math.exp(-calls_per_s * max(dt, 1.0)):
                target = r.randint(-1, 18)
                if target != self._floor:
                    car["target"], car["next_move"] = float(target), t + 2.0
                    running = 1.0
        return {"running": running, "floor": float(self._floor), "door_open": door, "fault_code": 0.0}

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
        elif fault.kind == "leak" and "flow_lpm" in out:
            leak = 0.3 * fault.magnitude  # L/min: a running cistern or a dripping pipe
            out["flow_lpm"] = values["flow_lpm"] + leak
            self._total_m3 += leak * self._dt / 60_000.0
            out["total_m3"] = self._total_m3
        elif fault.kind == "car_stuck" and "running" in out:
            frozen = self._stuck.setdefault(fault.kind, dict(values))
            out.update(running=1.0, floor=frozen["floor"], door_open=0.0)
        elif fault.kind == "door_fault" and "door_open" in out:
            out.update(running=0.0, door_open=float(int(t) % 4 < 2))  # opens and closes, never leaves
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
