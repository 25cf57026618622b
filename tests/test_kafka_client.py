"""Kafka security settings reach aiokafka and Faust unchanged."""
from __future__ import annotations

import faust

from streamapp.kafka_client import aiokafka_kwargs, faust_credentials
from streamapp.settings import KafkaSettings


def test_sasl_ssl_settings_pass_through_to_aiokafka():
    kafka = KafkaSettings(broker="kafka://b1:9093,b2:9093", security_protocol="SASL_SSL",
                          sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="pw")
    kwargs = aiokafka_kwargs(kafka)
    assert kwargs["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("SCRAM-SHA-512", "svc", "pw")
    assert kwargs["ssl_context"] is not None


def test_sasl_plaintext_builds_faust_sasl_credentials_without_tls():
    kafka = KafkaSettings(broker="kafka://b1:9092", security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "u" and credentials.ssl_context is None
    assert "ssl_context" not in aiokafka_kwargs(kafka)


def test_plaintext_needs_no_credentials():
    assert faust_credentials(KafkaSettings(broker="kafka://b1:9092")) is None
