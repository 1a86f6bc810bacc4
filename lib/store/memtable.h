// The store's memtable: an ordered, lock-free skip list for one writer and
// any number of readers, plugged into RocksDB as its MemTableRep.
//
// Why not RocksDB's own skip list: Debian's librocksdb 7.8 is built with its
// assertions on, and every insert into its InlineSkipList then re-checks the
// whole insert path, about 4 key comparisons a level: 34 comparisons an insert
// measured for ingestd's pattern (runs of one device's ascending sequences),
// against 2 to 4 in a build without assertions. That was a quarter of
// ingestd's CPU in a burst (docs/BENCHMARKS.md). This list does what that one
// does for such runs (an insert right after the previous one costs two
// comparisons) and nothing else. It compares keys itself, in RocksDB's
// internal key order for the bytewise user comparator: a family opened with
// another comparator must not use it.
//
// Contract (RocksDB's, for a MemTableRep without concurrent inserts): one
// thread inserts at a time (the DB must be opened with
// allow_concurrent_memtable_write = false); readers run beside it without a
// lock and see every entry whose insert finished before they looked.
#pragma once

#include <memory>

namespace rocksdb {
class MemTableRepFactory;
}

namespace rollertrace::store {

std::shared_ptr<rocksdb::MemTableRepFactory> NewSkipListMemTable();

}  // namespace rollertrace::store
