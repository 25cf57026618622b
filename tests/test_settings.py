"""Settings: YAML + ${VAR} interpolation + TRAFFICRISK_* overrides, and clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamapp.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trafficrisk.yaml"
    path.write_text(text)
    return path


def test_variables_and_defaults_are_interpolated(tmp_path):
    path = write(tmp_path, "kafka:\n  broker: kafka://${KHOST}:9092\n  replication_factor: ${RF:-2}\nweb:\n  port: ${PORT}\n")
    settings = load_settings(path, {"KHOST": "k1", "PORT": "7001"})
    assert settings.kafka.broker == "kafka://k1:9092"
    assert settings.kafka.replication_factor == 2
    assert settings.web.port == 7001


def test_unset_variable_names_the_variable_the_field_and_the_file(tmp_path):
    path = write(tmp_path, "kafka:\n  sasl_password: ${KAFKA_SECRET}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    assert str(path) in str(err.value) and "kafka.sasl_password" in str(err.value) and "KAFKA_SECRET" in str(err.value)


def test_environment_overrides_nested_fields(tmp_path):
    path = write(tmp_path, "fanout:\n  cooldown_s: 3\n")
    settings = load_settings(path, {"TRAFFICRISK_FANOUT__COOLDOWN_S": "7.5", "TRAFFICRISK_TOPICS__DLQ__PARTITIONS": "2"})
    assert settings.fanout.cooldown_s == 7.5
    assert settings.topics.dlq.partitions == 2
    assert settings.topics.dlq.name == "dlq"


def test_invalid_value_in_the_file_names_file_and_field(tmp_path):
    path = write(tmp_path, "kafka:\n  replication_factor: many\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    assert f"{path}: kafka.replication_factor:" in str(err.value)


def test_invalid_value_from_the_environment_names_the_variable(tmp_path):
    path = write(tmp_path, "{}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {"TRAFFICRISK_WEB__PORT": "99999"})
    assert "TRAFFICRISK_WEB__PORT: web.port:" in str(err.value)


@pytest.mark.parametrize("text,expected", [
    ("kafka: [unclosed\n", "not valid YAML"),
    ("- a list\n", "top level must be a mapping"),
    ("kafka:\n  brokr: kafka://x:1\n", "kafka.brokr: Extra inputs are not permitted"),
    ("kafka:\n  broker: localhost:9092\n", "kafka.broker"),
])
def test_malformed_files_fail_with_the_reason(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, text), {})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: cannot read"):
        load_settings(tmp_path / "nowhere.yaml", {})


def test_secrets_do_not_show_in_the_settings_repr(tmp_path):
    path = write(tmp_path, "kafka:\n  sasl_password: ${PW}\nweb:\n  auth_token: ${TOKEN}\n")
    settings = load_settings(path, {"PW": "hunter2-secret", "TOKEN": "tok-secret"})
    assert "hunter2-secret" not in repr(settings) and "tok-secret" not in repr(settings)
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2-secret"


def test_worker_with_unset_variable_exits_nonzero_naming_variable_and_file(tmp_path):
    path = write(tmp_path, "kafka:\n  broker: ${TRAFFICRISK_TEST_SURELY_UNSET}\n")
    result = subprocess.run(
        [sys.executable, "-m", "streamapp", "worker", "-l", "info"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "TRAFFICRISK_CONFIG": str(path)}, timeout=60,
    )
    assert result.returncode != 0
    assert "TRAFFICRISK_TEST_SURELY_UNSET" in result.stderr and str(path) in result.stderr
