"""A single-node Apache Kafka 3.9.2 (KRaft) from Maven Central, for tests and benchmarks.

The jars are resolved once with Maven into a cache folder and reused; each start
formats a fresh log directory and listens on free loopback ports.
Run ``python -m bench.local_kafka`` to keep one running for manual work.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

KAFKA_VERSION = "3.9.2"
ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "scripts" / "kafka" / "pom.xml"


def cache_dir() -> Path:
    return Path(os.environ.get("TRAFFICRISK_CACHE", ROOT / ".cache")) / f"kafka-{KAFKA_VERSION}"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing; the message says what to install."""


def ensure_jars() -> Path:
    libs = cache_dir() / "libs"
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise KafkaUnavailable(
            f"{' and '.join(missing)} not found: install Java 17 and Maven (Debian: "
            "apt-get install openjdk-17-jre-headless maven) or set KAFKA_BOOTSTRAP to a running cluster"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
        check=True,
    )
    tmp.rename(libs)
    return libs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalKafka:
    def __init__(self) -> None:
        self.port = _free_port()
        self.controller_port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="trafficrisk-kafka-"))
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        props = self.workdir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.workdir / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.retention.check.interval.ms=60000",
            "log.cleaner.dedupe.buffer.size=8388608",
        ]) + "\n")
        return props

    def start(self, timeout: float = 90.0) -> "LocalKafka":
        libs = ensure_jars()
        props = self._properties()
        classpath = f"{libs}/*"
        env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx512m")
        java = ["java", "-Xmx512m", "-XX:+UseSerialGC", "-Dlog4j.configuration=file:" + str(self._log4j()), "-cp", classpath]
        subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()), "-c", str(props)],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )
        self.log = open(self.workdir / "kafka.log", "wb")
        self.process = subprocess.Popen(java + ["kafka.Kafka", str(props)], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited; see {self.workdir / 'kafka.log'}")
            if b"Transition from STARTING to STARTED" in (self.workdir / "kafka.log").read_bytes():
                return self
            time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"Kafka did not start within {timeout:.0f}s; see {self.workdir / 'kafka.log'}")

    def _log4j(self) -> Path:
        path = self.workdir / "log4j.properties"
        path.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
            "log4j.logger.kafka.Kafka=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        return path

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":
    kafka = LocalKafka().start()
    print(f"KAFKA_BOOTSTRAP={kafka.bootstrap}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        kafka.stop()
