"""The RocksDB store behind ``app.store: rocksdb://``: Faust's, with its options kept on
reopening and one block cache for all the stores of a worker.

A worker holds one store per table and partition (64 here), and Faust 0.15.3's rocksdb
store (rocksdict driver) bounded their memory badly:

- rocksdict applies the ``Options`` given to ``Rdict`` only to column families it creates.
  Reopening a store that exists, as every worker start after the first does, left its
  default family with RocksDB's defaults: an 8 MB block cache of its own and no bloom
  filter, whatever the table asked for (the same bug as quix-streams #1136). The caches
  filled with the blocks that the aggregator's lookups and its scan of open frames read,
  mostly of rows long deleted: about 1 KB per frame, towards 64 x 8 MB.
- Even when honoured, the options gave each store a block cache of its own, with the
  index and filter blocks outside it: a bound that grows with the partition count.

Here every store opens its default family with its options, and all the stores of the
process share one LRU cache that also holds their index and filter blocks, so reads cost
at most ``app.store_cache_mb``. Write buffers stay per store: ``app.store_write_buffer_mb``,
at most two each (tables may still pass their own in ``options``).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import faust.stores
import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.types import AppT, CollectionT
from yarl import URL

from streamapp import runtime

SCHEME = "trafficrisk-rocksdb"
MB = 1 << 20


def faust_store_url(url: str) -> str:
    """The store URL to give Faust for ``app.store``: ``rocksdb://`` means this module's store."""
    parsed = URL(url)
    return str(parsed.with_scheme(SCHEME)) if parsed.scheme == "rocksdb" else url


@functools.cache
def shared_cache(capacity_mb: int) -> rocksdict.Cache:
    return rocksdict.Cache(capacity_mb * MB)


class RocksDBOptions(faust_rocksdb.RocksDBOptions):
    """Faust's options for one store, with a cache shared by all stores."""

    def __init__(self, *, cache: rocksdict.Cache, **kwargs: Any) -> None:
        super().__init__(use_rocksdict=True, **kwargs)
        self.cache = cache

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        options = self.as_options()
        access = rocksdict.AccessType.read_write() if self.ttl is None else rocksdict.AccessType.with_ttl(self.ttl)
        # The default family named too: otherwise a store that exists gets RocksDB's defaults.
        db = rocksdict.Rdict(str(path), options=options, column_families={"default": options}, access_type=access)
        db.set_read_options(rocksdict.ReadOptions())
        return db


class Store(faust_rocksdb.Store):
    def __init__(self, url: str | URL, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        config = runtime.settings().app
        self.rocksdb_options = RocksDBOptions(
            cache=shared_cache(config.store_cache_mb),
            **{"write_buffer_size": config.store_write_buffer_mb * MB, "max_write_buffer_number": 2, **self.options},
        )


faust.stores.STORES[SCHEME] = f"{__name__}:Store"
