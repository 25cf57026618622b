"""A table that also keeps its rows decoded in memory.

The aggregator reads its rows on every event (a frame's row and its camera's ledger)
and its timer looks through all open frames every tick; from the store each read is a
RocksDB lookup plus a pydantic decode of a few KB, which was about a tenth of a worker's
CPU. Only this worker's agent writes these rows while it owns their partitions, so a
copy kept on every write stays true until the partitions move: any rebalance, and the
changelog recovery after it (which writes to the store directly), drop the copy, and it
is filled again from the store as rows are read.
"""
from __future__ import annotations

from typing import Any, ValuesView

from faust import Table
from faust.stores.base import SerializedStore


class DecodedTable(Table):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows: dict = {}
        # True once _rows holds every row of the store (after a full read).
        self._whole = False

    def _row_key(self, key: Any) -> Any:
        # Keys as the store gives them back (RocksDB returns a str key of a bytes table
        # as bytes): rows read in bulk and rows written one by one must meet.
        store = self.data
        return store._decode_key(store._encode_key(key)) if isinstance(store, SerializedStore) else key

    def __getitem__(self, key: Any) -> Any:
        row_key = self._row_key(key)
        try:
            return self._rows[row_key]
        except KeyError:
            if self._whole:
                return self.__missing__(key)
        value = super().__getitem__(key)
        self._rows[row_key] = value
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._rows[self._row_key(key)] = value

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._rows.pop(self._row_key(key), None)

    def __contains__(self, key: object) -> bool:
        if self._row_key(key) in self._rows:
            return True
        return not self._whole and super().__contains__(key)

    def values(self) -> ValuesView:
        """Every row of this worker's partitions, read from the store once per rebalance."""
        if not self._whole:
            self._rows = dict(self.data.items())
            self._whole = True
        return self._rows.values()

    def forget(self) -> None:
        self._rows, self._whole = {}, False

    async def on_rebalance(self, *args: Any, **kwargs: Any) -> None:
        self.forget()
        await super().on_rebalance(*args, **kwargs)

    async def on_recovery_completed(self, *args: Any, **kwargs: Any) -> None:
        self.forget()
        await super().on_recovery_completed(*args, **kwargs)
