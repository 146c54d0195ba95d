"""PMS5003 against an independent peer: pypms (avaldebe/PyPMS), written against real sensors.

Our framer and our simulator were written together, so a shared misreading of the
Plantower manuals would pass their own tests. pypms was not: it reads PMS1003/5003/7003
and PMSA003 sensors in the field, and its repository keeps frames captured from one.

- pypms's reader (its documented library API, :class:`pms.core.SensorReader`) reads our
  simulator over a real pseudo-terminal: wake, passive mode, reads, sleep.
- our framer and our driver decode the frames pypms captured from a real PMSx003, to the
  values pypms's own decoder gives them.
"""

import pytest
from pms.core import Sensor, SensorReader

from firmware_adapters import pms5003
from firmware_adapters.drivers import Pms5003Driver
from simulators.pty_pms5003 import PtyPms5003
from tests.scripted_line import ScriptedLine

# Frames a real PMSx003 sent, as captured by pypms (`pms -m PMSx003 -n 10 -i 10 serial -f hexdump`):
# avaldebe/PyPMS, tag 0.8.1 (commit f54bc10f0d4c5fa01a8cf3a56ab9a62298e3cb06),
# tests/captured_data/data.csv (rows "PMSx003"); the same bytes are printed in docs/sensors/Plantower.md.
# Word 13 (reserved) is 0x9700 on this sensor: a decoder must not assume it is zero.
CAPTURED = [
    "424d001c00000008000800000008000800d20046002d001e00000000970002c5",
    "424d001c00000007000700000007000700d20046002d001e00000000970002c1",
    "424d001c00000007000700000007000700bd003f002a001b000000009700029f",
    "424d001c00000007000700000007000700b4003c00270018000000009700028d",
    "424d001c00000006000600000006000600b4003c001d0015000000009700027c",
    "424d001c000000060006000000060006009f0035001a0012000000009700025a",
    "424d001c000000050005000000050005008a002e0017000f0000000097000234",
]
# What pypms decoded from them, from the same tag's tests/captured_data/PMSx003.csv:
# raw01 raw25 raw10 (CF=1), pm01 pm25 pm10 (atmospheric), n0_3 .. n10_0 (pypms divides the
# per-0.1 L counts by 100).
PUBLISHED = [
    (0, 8, 8, 0, 8, 8, 2.10, 0.70, 0.45, 0.30, 0.00, 0.00),
    (0, 7, 7, 0, 7, 7, 2.10, 0.70, 0.45, 0.30, 0.00, 0.00),
    (0, 7, 7, 0, 7, 7, 1.89, 0.63, 0.42, 0.27, 0.00, 0.00),
    (0, 7, 7, 0, 7, 7, 1.80, 0.60, 0.39, 0.24, 0.00, 0.00),
    (0, 6, 6, 0, 6, 6, 1.80, 0.60, 0.29, 0.21, 0.00, 0.00),
    (0, 6, 6, 0, 6, 6, 1.59, 0.53, 0.26, 0.18, 0.00, 0.00),
    (0, 5, 5, 0, 5, 5, 1.38, 0.46, 0.23, 0.15, 0.00, 0.00),
]
PMSX003 = Sensor["PMS5003"]


def _as_pypms_row(r: pms5003.Reading) -> tuple[float, ...]:
    counts = (r.gt0_3um, r.gt0_5um, r.gt1_0um, r.gt2_5um, r.gt5_0um, r.gt10um)
    return (r.pm1_0_cf1, r.pm2_5_cf1, r.pm10_cf1, r.pm1_0, r.pm2_5, r.pm10, *(c / 100 for c in counts))


def _pypms_row(frame: bytes) -> tuple[float, ...]:
    obs = PMSX003.decode(frame, time=1)
    return (obs.raw01, obs.raw25, obs.raw10, obs.pm01, obs.pm25, obs.pm10,
            obs.n0_3, obs.n0_5, obs.n1_0, obs.n2_5, obs.n5_0, obs.n10_0)


@pytest.mark.unit
@pytest.mark.parametrize(("frame", "published"), list(zip(CAPTURED, PUBLISHED, strict=True)))
def test_our_framer_decodes_frames_captured_by_pypms(frame: str, published: tuple[float, ...]) -> None:
    raw = bytes.fromhex(frame)
    decoded = pms5003.decode(raw)
    assert decoded.used == 32 and decoded.reading is not None
    assert _as_pypms_row(decoded.reading) == pytest.approx(published)
    assert _as_pypms_row(decoded.reading) == pytest.approx(_pypms_row(raw))


@pytest.mark.unit
def test_our_driver_reads_captured_frames_behind_the_acknowledgements_pypms_expects() -> None:
    # pypms checks a passive-mode answer for header 42 4D 00 04, 8 bytes and the additive
    # checksum (pms/sensors/plantower/pmsx003.py, pms3003.Message._validate): our driver
    # must skip exactly such a frame, wherever a read cuts it.
    ack = pms5003.encode_ack(pms5003.CMD_MODE, 0)
    assert PMSX003.check(ack, "passive_mode")
    frames = [bytes.fromhex(f) for f in CAPTURED]
    # Each read command is answered by a late acknowledgement and a frame, in 5-byte reads.
    chunks = [(ack + f)[i:i + 5] for f in frames for i in range(0, 40, 5)]
    driver = Pms5003Driver(ScriptedLine(chunks), timeout_s=0.05, retries=0)  # type: ignore[arg-type]
    read = [driver.poll().values for _ in frames]
    assert read == [{"pm1_0": p[3], "pm2_5": p[4], "pm10": p[5]} for p in PUBLISHED]
    assert driver.counters.errors == {}


@pytest.mark.unit
def test_pypms_decodes_what_our_framer_encodes() -> None:
    reading = pms5003.Reading(11, 22, 33, 10, 20, 30, 3000, 900, 250, 40, 6, 1)
    assert PMSX003.decode(pms5003.encode_reading(reading), time=1).pm25 == 20
    assert _pypms_row(pms5003.encode_reading(reading)) == pytest.approx(_as_pypms_row(reading))


class _RecordingSim(PtyPms5003):
    """The simulator, keeping every data frame it sent."""

    def __init__(self, seed: int) -> None:
        self.sent: list[bytes] = []
        super().__init__(seed)

    def frame(self) -> bytes:
        raw = super().frame()
        self.sent.append(raw)
        return raw


@pytest.mark.real
def test_pypms_reads_our_simulator_over_a_real_pty() -> None:
    with _RecordingSim(seed=5) as sim:
        reader = SensorReader("PMS5003", sim.port, samples=3, interval=None, timeout=1.0, max_retries=0)
        reader.pre_heat = 0  # pypms waits 10 s after waking a PMSx003; its own tests switch this off too
        with reader:  # wake, passive mode (pypms checks the acknowledgement), ... , sleep
            observations = list(reader())
        assert sim.asleep  # pypms put the sensor to sleep when it closed the port
    assert len(observations) == 3
    # The first frame answered wake; each observation is one of the read frames, decoded by pypms.
    ours = [pms5003.decode(raw).reading for raw in sim.sent[1:]]
    assert [(o.raw25, o.pm01, o.pm25, o.pm10) for o in observations] == \
        [(r.pm2_5_cf1, r.pm1_0, r.pm2_5, r.pm10) for r in ours if r is not None]
    assert (sim.commands, sim.acks_sent, sim.bad_commands) == (6, 2, 0)  # wake, mode, 3 reads, sleep
