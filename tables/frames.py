"""The aggregator's state, co-partitioned with frame-context and risk-assessment-results
(both keyed by camera id), so a worker that takes over a partition recovers exactly
the frames whose events it will now read.

``frames``: origin_message_id -> the frame's context and results so far; a row leaves
the table when its verdict is emitted. ``camera_frames``: camera_id -> deadlines of
the camera's open frames and the ids of its recently finished frames (bounded).
"""
from risk.aggregation import CameraLedger, FrameState
from streamapp.app import app, settings
from streamapp.codecs import with_model_values

frames = with_model_values(app.Table(
    "aggregator-frames",
    default=None,
    key_type=bytes,
    partitions=settings.topics.frame_context.partitions,
    help="origin_message_id -> context and group results of an open frame",
), FrameState)

camera_frames = with_model_values(app.Table(
    "aggregator-cameras",
    default=None,
    key_type=bytes,
    partitions=settings.topics.frame_context.partitions,
    help="camera_id -> open frames' deadlines and recently finished frame ids",
), CameraLedger)
