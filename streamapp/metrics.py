"""Prometheus metrics, defined once; every process exports the ones it updates."""
from prometheus_client import Counter, Gauge, Histogram

DLQ_MESSAGES = Counter("trafficrisk_dlq_messages_total", "Messages sent to the DLQ", ["reason", "source"])
FRAMES_IN = Counter("trafficrisk_fanout_frames_total", "Detection messages read by the fan-out")
TASKS_OUT = Counter("trafficrisk_tasks_total", "Assessment tasks emitted by the fan-out", ["priority"])
GROUPS_SKIPPED = Counter("trafficrisk_groups_skipped_total", "Groups not sent for assessment", ["reason"])

# Aggregator and relay (issue 5).
FRAMES_AGGREGATED = Counter("trafficrisk_frames_total", "Frames whose context reached the aggregator")
DETECTIONS = Counter("trafficrisk_detections_total", "Detected objects in frames reaching the aggregator")
GROUPS = Counter("trafficrisk_groups_total", "Traffic groups in frames reaching the aggregator")
GROUP_RESULTS = Counter("trafficrisk_group_results_total", "Assessment results taken into a frame", ["status"])
VERDICTS = Counter("trafficrisk_verdicts_total", "Camera verdicts emitted", ["outcome"])
AGGREGATOR_IGNORED = Counter("trafficrisk_aggregator_ignored_total", "Events that changed nothing", ["reason"])
OPEN_FRAMES = Gauge("trafficrisk_aggregator_open_frames", "Frames waiting for results on this worker")
FRAME_TO_VERDICT = Histogram(
    "trafficrisk_frame_to_verdict_seconds", "Frame timestamp to verdict emitted",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 60),
)
WS_CLIENTS = Gauge("trafficrisk_websocket_clients", "Browsers connected to /ws on this worker")
WS_SENT = Counter("trafficrisk_websocket_messages_total", "Messages queued for browsers", ["type"])
WS_DROPPED = Counter("trafficrisk_websocket_dropped_total", "Messages dropped for slow browsers (oldest first)")
RELAY_DUPLICATES = Counter("trafficrisk_relay_duplicate_verdicts_total", "Re-emitted verdicts not relayed again")
RELAY_WITHOUT_PREVIEW = Counter(
    "trafficrisk_relay_verdicts_without_preview_total", "Verdicts relayed without a frame image (none arrived in time)")
CONSUMER_LAG = Gauge("trafficrisk_consumer_lag", "Messages not yet committed by the app's consumer group", ["topic"])
DLQ_SIZE = Gauge("trafficrisk_dlq_size", "Messages held in the DLQ topic")

# Key pool and assessor (labels carry key NAMES only, never secrets).
LLM_CALLS = Counter("trafficrisk_llm_calls_total", "LLM calls by key name and outcome", ["key", "outcome"])
LLM_RATE_LIMITED = Counter("trafficrisk_llm_rate_limited_total", "LLM calls answered 429", ["key"])
LLM_LATENCY = Histogram(
    "trafficrisk_llm_latency_seconds", "LLM call latency", ["key"],
    buckets=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
KEY_STATES = Gauge("trafficrisk_llm_keys", "Keys of the pool by state", ["state"])
ASSESSMENTS = Counter("trafficrisk_assessments_total", "Assessed tasks by assessor and status", ["assessor", "status"])

# Detector runner (`trafficrisk detect`).
DETECTOR_FRAMES = Counter("trafficrisk_detector_frames_total", "Sampled frames by what the model did", ["outcome"])
DETECTOR_DROPPED = Counter("trafficrisk_detector_dropped_frames_total", "Frames dropped from a full detector queue")
DETECTOR_LATENCY = Histogram(
    "trafficrisk_detector_latency_seconds", "From frame capture to finished detection message",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
DETECTOR_OBJECTS = Counter("trafficrisk_detector_objects_total", "Objects detected")
DETECTOR_GROUPS = Counter("trafficrisk_detector_groups_total", "Traffic groups formed")
DETECTOR_SENT = Counter("trafficrisk_detector_messages_total", "Messages the detector produced", ["topic", "outcome"])
CAMERA_STATUS = Gauge("trafficrisk_camera_status", "Camera status: 1 online, 0 offline, 2 fault", ["camera_id"])
