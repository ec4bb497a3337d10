"""Readings shaped like sensor-log-generator rows, valid unless told otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2025, 8, 18, 10, 15, tzinfo=UTC)


def reading(row_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid, not anomalous reading; ``overrides`` replace fields (None keeps a null,
    the string "<missing>" removes the field)."""
    moment = START + timedelta(seconds=row_id)
    row: dict[str, Any] = {
        "id": row_id,
        "timestamp": moment.isoformat(timespec="milliseconds"),
        "sensor_id": f"CHI_{row_id % 5:06d}",
        "temperature": 22.5,
        "humidity": 45.0,
        "pressure": 1013.2,
        "vibration": 0.4,
        "voltage": 12.1,
        "status_code": 0,
        "anomaly_flag": 0,
        "anomaly_type": None,
        "firmware_version": "1.4.0",
        "model": "EnvMonitor-3000",
        "manufacturer": "SensorTech",
        "location": "Chicago",
        "latitude": 41.8781,
        "longitude": -87.6298,
        "original_timezone": "-05:00",
        "serial_number": "SN-1000",
        "deployment_type": "factory",
        "installation_date": "2025-01-10",
        "height_meters": 3.5,
        "orientation_degrees": None,
    }
    for key, value in overrides.items():
        if value == "<missing>":
            row.pop(key, None)
        else:
            row[key] = value
    return row


def anomalous_reading(row_id: int, kind: str = "spike", **overrides: Any) -> dict[str, Any]:
    """A valid reading the sensor itself flags as anomalous."""
    return reading(row_id, anomaly_flag=1, status_code=1, anomaly_type=kind, **overrides)
