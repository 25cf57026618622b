"""Latest verdict per camera. Its changelog IS the compacted ``camera-verdicts`` topic:
setting a camera's row publishes the verdict (one write, inside the same transaction
under exactly_once), and a recovering worker rebuilds the table from that topic."""
from faust import Table
from faust.types import FutureMessage

from streamapp.app import app, settings, topics
from streamapp.codecs import with_model_values
from streamapp.models import CameraVerdictMessage


class PublishingTable(Table):
    """A table that keeps the delivery of its last changelog record: the aggregator
    settles a frame only once its verdict is on Kafka."""

    last_write: FutureMessage

    def send_changelog(self, *args, **kwargs) -> FutureMessage:
        self.last_write = super().send_changelog(*args, **kwargs)
        return self.last_write


latest_verdicts = with_model_values(app.tables.add(PublishingTable(
    app,
    name="latest-verdicts",
    default=None,
    beacon=app.tables.beacon,
    key_type=bytes,
    partitions=settings.topics.camera_verdicts.partitions,
    changelog_topic=topics.camera_verdicts,
    help="camera_id -> the camera's latest verdict (changelog: camera-verdicts)",
)), CameraVerdictMessage)
