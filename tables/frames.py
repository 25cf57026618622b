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

# Rows live for seconds: 1 MB write buffers and caches per partition store instead of
# Faust's defaults (64 MB x 3 buffers, 2 GB cache). There is one store per table and
# partition (16 x 3 here), and memtables and caches fill before they are reused, so a
# worker's memory grows towards stores x (2 buffers + cache): 96 MB with these sizes,
# 480 MB with 4 MB buffers and 8 MB caches.
STORE_OPTIONS = {"write_buffer_size": 1 << 20, "max_write_buffer_number": 2, "block_cache_size": 1 << 20}


def _frame_table(name: str, model: type, help: str):
    return with_model_values(app.Table(
        name,
        default=None,
        key_type=bytes,
        partitions=settings.topics.frame_context.partitions,
        options=STORE_OPTIONS,
        help=help,
    ), model)


frames = _frame_table(
    "aggregator-frames", FrameState, "origin_message_id -> context and results so far of an open frame")
camera_frames = _frame_table(
    "aggregator-cameras", CameraLedger, "camera_id -> recently finished frame ids")
