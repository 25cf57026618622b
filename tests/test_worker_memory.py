"""The worker's memory: its RocksDB store options hold on reopening and one cache serves all
stores; glibc gives large buffers mappings of their own, returned when freed."""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import faust.stores
import pytest

from streamapp import table_store

ROOT = Path(__file__).resolve().parent.parent


def open_store(path: Path, cache_mb: int = 3):
    options = table_store.RocksDBOptions(cache=table_store.shared_cache(cache_mb), write_buffer_size=1 << 20)
    return options.open(path)


def fill_and_read(db, rows: int = 2000) -> None:
    for i in range(rows):
        db.put(f"row-{i}".encode(), b"x" * 500)
    db.flush()
    for _ in db.items():
        pass


def test_a_reopened_store_keeps_the_shared_cache_and_its_bloom_filter(tmp_path):
    db = open_store(tmp_path / "frames-0.db")
    db.put(b"frame", b"state")
    db.close()

    db = open_store(tmp_path / "frames-0.db")

    assert db[b"frame"] == b"state"
    # Not RocksDB's default of an 8 MB cache per store, nor its default of no filter.
    assert db.property_int_value("rocksdb.block-cache-capacity") == 3 << 20
    last_open = (tmp_path / "frames-0.db" / "LOG").read_text().rsplit("DB SUMMARY", 1)[-1]
    assert "filter_policy: bloomfilter" in last_open
    db.close()


def test_every_store_reads_through_one_cache(tmp_path):
    frames, cameras = open_store(tmp_path / "frames-0.db"), open_store(tmp_path / "cameras-0.db")

    fill_and_read(frames)

    used = frames.property_int_value("rocksdb.block-cache-usage")
    assert used > 0
    assert cameras.property_int_value("rocksdb.block-cache-usage") == used
    frames.close()
    cameras.close()


def test_rocksdb_url_selects_this_store_and_other_stores_are_left_alone():
    assert faust.stores.by_url(table_store.faust_store_url("rocksdb://")) is table_store.Store
    assert table_store.faust_store_url("rocksdb:///var/tables").endswith(":/var/tables")
    assert table_store.faust_store_url("memory://") == "memory://"


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33 or later")
def test_worker_malloc_maps_message_sized_buffers_even_after_a_larger_one_was_freed():
    # In a child: mallopt changes the whole process. Freeing a 4 MB mapped block would
    # raise glibc's threshold to 4 MB, and the 100 KB buffers would then grow the heap.
    script = """
import ctypes
from streamapp import malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
assert malloc.fix_mmap_threshold(64)
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
buffers = [libc.malloc(100_000) for _ in range(200)]
print((libc.mallinfo2().hblkhd - before) >> 20)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    # Of 19 MB, what the heap's free space could not hold is mapped (all of it, measured).
    assert int(out.stdout) >= 10
