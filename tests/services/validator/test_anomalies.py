"""Anomaly marking: the sensor's own flag and the spec's thresholds, with reasons."""

from __future__ import annotations

from sensorpipe.config import load_validation_spec
from sensorpipe.config.spec import AnomalyDetection, Threshold
from services.validator.anomalies import AnomalyDetector
from tests.services.validator.rows import anomalous_reading, reading

DEFAULT = AnomalyDetector(load_validation_spec().anomaly_detection)


def test_a_normal_reading_is_not_anomalous() -> None:
    assert DEFAULT.reasons(reading(1)) == []


def test_the_sensor_flag_with_its_type() -> None:
    assert DEFAULT.reasons(anomalous_reading(1, "trend")) == ["sensor_flag:trend"]
    assert DEFAULT.reasons(reading(1, anomaly_flag=1)) == ["sensor_flag"]


def test_the_sensor_flag_can_be_ignored() -> None:
    detector = AnomalyDetector(AnomalyDetection(use_sensor_flag=False))
    assert detector.reasons(anomalous_reading(1)) == []


def test_values_beyond_thresholds_each_give_a_reason() -> None:
    row = reading(1, temperature=45.5, humidity=5.0, vibration=9.0, voltage=12.0)
    assert DEFAULT.reasons(row) == [
        "temperature above 40",
        "humidity below 10",
        "vibration above 8",
    ]


def test_thresholds_are_inclusive_bounds() -> None:
    assert DEFAULT.reasons(reading(1, temperature=40.0, humidity=10.0)) == []


def test_flag_and_thresholds_together() -> None:
    row = anomalous_reading(1, "spike", temperature=-3.0)
    assert DEFAULT.reasons(row) == ["sensor_flag:spike", "temperature below 0"]


def test_missing_metrics_are_skipped() -> None:
    detector = AnomalyDetector(
        AnomalyDetection(thresholds={"pressure": Threshold(low=900), "voltage": Threshold(high=5)})
    )
    assert detector.reasons(reading(1, pressure=None, voltage="<missing>")) == []
    assert detector.reasons(reading(1, pressure=850.0, voltage=4.0)) == ["pressure below 900"]
