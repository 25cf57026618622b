"""The aggregator's state, co-partitioned with frame-context and risk-assessment-results
(both keyed by camera id), so a worker that takes over a partition recovers exactly
the frames whose events it will now read.

``frames``: origin_message_id -> the frame's context (objects, groups, which groups
were assessed) and its results so far; rewritten per event, gone when the verdict is
emitted; the rows are also the open frames whose deadlines the aggregator's timer
checks. ``camera_frames``: camera_id -> the ids of the camera's recently finished
frames (bounded), written once per finished frame.
"""
from risk.aggregation import CameraLedger, FrameState
from streamapp.app import app, settings
from streamapp.codecs import with_model_values
from tables.decoded import DecodedTable

def _frame_table(name: str, model: type, help: str):
    return with_model_values(app.tables.add(DecodedTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        key_type=bytes,
        partitions=settings.topics.frame_context.partitions,
        help=help,
    )), model)


frames = _frame_table(
    "aggregator-frames", FrameState, "origin_message_id -> context and results so far of an open frame")
camera_frames = _frame_table(
    "aggregator-cameras", CameraLedger, "camera_id -> recently finished frame ids")
