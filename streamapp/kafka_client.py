"""Connection settings for every Kafka client we open: Faust's, aiokafka's, the admin's."""
from __future__ import annotations

from typing import Any, Optional

import faust
from aiokafka.helpers import create_ssl_context

from streamapp.settings import KafkaSettings


def _ssl_context(kafka: KafkaSettings) -> Optional[Any]:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
    )


def aiokafka_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    ssl_context = _ssl_context(kafka)
    if ssl_context is not None:
        kwargs["ssl_context"] = ssl_context
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return kwargs


def faust_credentials(kafka: KafkaSettings) -> Optional[Any]:
    ssl_context = _ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def producer_compression(kafka: KafkaSettings) -> Optional[str]:
    return None if kafka.compression == "none" else kafka.compression
