"""Prometheus metrics, defined once; every process exports the ones it updates."""
from prometheus_client import Counter, Gauge, Histogram

DLQ_MESSAGES = Counter("trafficrisk_dlq_messages_total", "Messages sent to the DLQ", ["reason", "source"])
FRAMES_IN = Counter("trafficrisk_fanout_frames_total", "Detection messages read by the fan-out")
TASKS_OUT = Counter("trafficrisk_tasks_total", "Assessment tasks emitted by the fan-out", ["priority"])
GROUPS_SKIPPED = Counter("trafficrisk_groups_skipped_total", "Groups not sent for assessment", ["reason"])
