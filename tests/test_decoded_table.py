"""DecodedTable: rows come from memory while this worker owns them, from the store
after anything (a rebalance, changelog recovery) may have written the store directly."""
from __future__ import annotations

from unittest.mock import patch

import faust
import pytest

from faust.stores.base import SerializedStore

from tables.decoded import DecodedTable


class SerializingStore(SerializedStore):
    """A dict of bytes: keys and values go through the table's codecs, as with RocksDB."""

    def __post_init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}

    def _get(self, key):
        return self.rows.get(key)

    def _set(self, key, value):
        self.rows[key] = value

    def _del(self, key):
        self.rows.pop(key, None)

    def _iterkeys(self):
        return iter(list(self.rows))

    def _itervalues(self):
        return iter(list(self.rows.values()))

    def _iteritems(self):
        return iter(list(self.rows.items()))

    def _size(self):
        return len(self.rows)

    def _contains(self, key):
        return key in self.rows

    def _clear(self):
        self.rows.clear()

    def reset_state(self):
        self.rows.clear()

    def backup_partition(self, *args, **kwargs):
        raise NotImplementedError

    def restore_backup(self, *args, **kwargs):
        raise NotImplementedError


@pytest.fixture(params=["serializing", "memory"])
def table(request):
    app = faust.App(f"decoded-table-test-{request.param}", store="memory://", broker="kafka://127.0.0.1:1")
    # Like the aggregator's tables: bytes keys in the store, written and read with str keys.
    table = app.tables.add(DecodedTable(
        app, name="rows", default=None, beacon=app.tables.beacon, partitions=4, key_type=bytes, value_type=str))
    if request.param == "serializing":
        table._data = SerializingStore("memory://", app, table, table_name="rows", key_type=bytes,
                                       key_serializer="raw", value_type=str, value_serializer="json")
    # The changelog sends need a running worker; what is tested here is the reading side.
    with patch.object(table, "on_key_set"), patch.object(table, "on_key_del"):
        yield table


def test_a_written_row_is_read_back_without_decoding_and_is_in_the_store_too(table):
    row = "row-a"
    table["a"] = row
    assert table["a"] is row
    assert table.data["a"] == "row-a", "the store has it too"
    assert "a" in table and table.get("missing") is None and "missing" not in table


def test_a_row_only_in_the_store_is_read_from_it(table):
    table.data["b"] = "from-store"
    assert table.get("b") == "from-store"
    assert "b" in table


def test_values_are_every_stored_row_and_follow_writes_and_deletes(table):
    table.data["old"] = "recovered"
    table["new"] = "written"
    assert sorted(table.values()) == ["recovered", "written"]
    del table["old"]
    assert sorted(table.values()) == ["written"]
    assert "old" not in table and table.get("old") is None


async def test_recovery_and_rebalance_drop_the_copy_so_rows_written_by_recovery_are_seen(table):
    table["a"] = "mine"
    assert list(table.values()) == ["mine"]
    table.data["a"], table.data["c"] = "recovered-a", "recovered-c"  # what changelog recovery does
    await table.on_recovery_completed(set(), set())
    assert sorted(table.values()) == ["recovered-a", "recovered-c"]

    table.data["d"] = "after-rebalance"
    await table.on_rebalance(set(), set(), set())
    assert table.get("d") == "after-rebalance"
    assert sorted(table.values()) == ["after-rebalance", "recovered-a", "recovered-c"]


def test_rows_read_in_bulk_are_found_by_the_keys_the_agent_uses(table):
    table.data["frame-1"] = "recovered"  # comes back from the store with a bytes key
    list(table.values())
    assert table.get("frame-1") == "recovered" and "frame-1" in table
    table["frame-1"] = "updated"
    assert sorted(table.values()) == ["updated"]
