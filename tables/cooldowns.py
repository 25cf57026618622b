"""Per-camera assessment cooldown: frame time (epoch s) of the camera's last assessed frame.

Changelog-backed, co-partitioned with detection-results (keyed by camera id), so a
restarted or newly assigned worker recovers it before the fan-out resumes.
"""
import faust

from streamapp.app import app, settings

fanout_cooldowns = app.Table(
    "fanout-cooldowns",
    partitions=settings.topics.detection_results.partitions,
    schema=faust.Schema(key_type=str, value_type=float, key_serializer="json", value_serializer="json"),
    help="camera_id -> frame time of the last frame sent for assessment",
)
