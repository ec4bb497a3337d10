"""The sensor fleet: locations with coordinates and UTC offsets, sensors with identity.

Ids follow the generator's auto-id format: up to four upper-case letters of the city,
an underscore, six random upper-case alphanumerics (``DENV_7K2Q9B``).
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from datetime import date, timedelta

from edge.simulator.errors import SimulatorError

_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class Location:
    name: str
    latitude: float
    longitude: float
    utc_offset: str  # "+HH:MM", as the generator stores it (not an IANA name)


@dataclass(frozen=True, slots=True)
class Device:
    manufacturer: str
    model: str


@dataclass(frozen=True, slots=True)
class Sensor:
    sensor_id: str
    location: Location
    latitude: float
    longitude: float
    firmware_version: str
    device: Device
    serial_number: str
    deployment_type: str
    installation_date: str
    manufacture_date: str
    height_meters: float
    orientation_degrees: float
    instance_id: str


CITIES: tuple[Location, ...] = (
    Location("Denver", 39.7392, -104.9903, "-07:00"),
    Location("Chicago", 41.8781, -87.6298, "-06:00"),
    Location("New York", 40.7128, -74.0060, "-05:00"),
    Location("Seattle", 47.6062, -122.3321, "-08:00"),
    Location("Austin", 30.2672, -97.7431, "-06:00"),
    Location("London", 51.5074, -0.1278, "+00:00"),
    Location("Berlin", 52.5200, 13.4050, "+01:00"),
    Location("Lisbon", 38.7223, -9.1393, "+00:00"),
    Location("Mumbai", 19.0760, 72.8777, "+05:30"),
    Location("Tokyo", 35.6762, 139.6503, "+09:00"),
    Location("Sydney", -33.8688, 151.2093, "+10:00"),
    Location("Sao Paulo", -23.5505, -46.6333, "-03:00"),
    Location("Nairobi", -1.2921, 36.8219, "+03:00"),
    Location("Singapore", 1.3521, 103.8198, "+08:00"),
    Location("Toronto", 43.6532, -79.3832, "-05:00"),
    Location("Reykjavik", 64.1466, -21.9426, "+00:00"),
)

# The generator's current enums (notes/origin.md 3.3), not the v1 schema's.
DEVICES: tuple[Device, ...] = (
    Device("SensorTech", "EnvMonitor-3000"),
    Device("SensorTech", "EnvMonitor-4000"),
    Device("EnvMonitors", "EnvMonitor-5000"),
    Device("IoTPro", "TempSensor Pro"),
    Device("DataLogger", "HumidCheck 2000"),
)
FIRMWARE: tuple[str, ...] = ("1.3.0", "1.4.0", "1.5.0", "2.0.0")
DEPLOYMENTS: tuple[str, ...] = ("indoor", "outdoor", "industrial", "rooftop")

# Sensors are scattered within this radius of their city (the generator's GPS variation).
_SCATTER_METRES = 5_000.0
_METRES_PER_DEGREE = 111_320.0


def city_prefix(city: str) -> str:
    letters = "".join(ch for ch in city.upper() if "A" <= ch <= "Z")
    return letters[:4] or "LOC"


def build_fleet(rng: random.Random, *, sensors: int, locations: int) -> list[Sensor]:
    """``sensors`` sensors spread round-robin over the first ``locations`` cities."""
    if not 1 <= locations <= len(CITIES):
        raise SimulatorError(
            f"--locations {locations} is outside 1..{len(CITIES)}",
            hint="the simulator knows that many distinct cities",
        )
    if sensors < 1:
        raise SimulatorError(f"--sensors {sensors} must be at least 1")
    cities = CITIES[:locations]
    used: set[str] = set()
    fleet = []
    for index in range(sensors):
        city = cities[index % len(cities)]
        fleet.append(_sensor(rng, city, used))
    return fleet


def _sensor(rng: random.Random, city: Location, used: set[str]) -> Sensor:
    while True:
        suffix = "".join(rng.choice(_ID_ALPHABET) for _ in range(6))
        sensor_id = f"{city_prefix(city.name)}_{suffix}"
        if sensor_id not in used:
            used.add(sensor_id)
            break
    distance = _SCATTER_METRES * math.sqrt(rng.random())
    bearing = rng.uniform(0, 2 * math.pi)
    d_lat = distance * math.cos(bearing) / _METRES_PER_DEGREE
    d_lon = (
        distance
        * math.sin(bearing)
        / (_METRES_PER_DEGREE * max(math.cos(math.radians(city.latitude)), 0.01))
    )
    installed = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 540))
    manufactured = installed - timedelta(days=rng.randrange(30, 400))
    return Sensor(
        sensor_id=sensor_id,
        location=city,
        latitude=round(city.latitude + d_lat, 6),
        longitude=round(city.longitude + d_lon, 6),
        firmware_version=rng.choice(FIRMWARE),
        device=rng.choice(DEVICES),
        serial_number=f"SN-{rng.randrange(10**7, 10**8)}",
        deployment_type=rng.choice(DEPLOYMENTS),
        installation_date=installed.isoformat(),
        manufacture_date=manufactured.isoformat(),
        height_meters=round(rng.uniform(0.5, 30.0), 1),
        orientation_degrees=float(rng.randrange(0, 360)),
        instance_id=f"node-{rng.getrandbits(32):08x}",
    )
