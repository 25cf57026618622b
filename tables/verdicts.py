"""Latest verdict per camera. Its changelog IS the compacted ``camera-verdicts`` topic:
setting a camera's row publishes the verdict (one write, inside the same transaction
under exactly_once), and a recovering worker rebuilds the table from that topic."""
from streamapp.app import app, settings, topics
from streamapp.codecs import with_model_values
from streamapp.models import CameraVerdictMessage
from tables.frames import STORE_OPTIONS

latest_verdicts = with_model_values(app.Table(
    "latest-verdicts",
    default=None,
    key_type=bytes,
    partitions=settings.topics.camera_verdicts.partitions,
    changelog_topic=topics.camera_verdicts,
    options=STORE_OPTIONS,
    help="camera_id -> the camera's latest verdict (changelog: camera-verdicts)",
), CameraVerdictMessage)
