#include "store/memtable.h"

#include <rocksdb/memtablerep.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>

// RocksDB's Arena (memory/arena.h) is not installed; an iterator RocksDB asks
// to be placed in one must come from it (RocksDB then destroys it in place and
// frees the arena itself). Only this exported member is declared, to call it.
namespace rocksdb {
class Logger;
class Arena {
 public:
  char* AllocateAligned(size_t bytes, size_t huge_page_size, Logger* logger);
};
}  // namespace rocksdb

namespace rollertrace::store {
namespace {

using rocksdb::KeyHandle;
using rocksdb::MemTableRep;
using rocksdb::Slice;

constexpr int kMaxHeight = 12;
constexpr uint32_t kBranching = 4;  // a node is one level taller with chance 1/4

// A node is its entry (the bytes RocksDB writes: a length-prefixed internal
// key, then the value), preceded by its links: link i of the node whose entry
// starts at `e` is at ((std::atomic<const char*>*) e) - 1 - i. A node is named
// by its entry; the head is an entry-less node with every level.
using Link = std::atomic<const char*>;

Link* LinkOf(const char* entry, int level) {
  return reinterpret_cast<Link*>(const_cast<char*>(entry)) - 1 - level;
}

// RocksDB's internal key order, for the bytewise user comparator every family
// of the store has (Db::Open sets no other): user keys ascending, then the
// 8-byte trailer (sequence << 8 | type, little-endian) descending. Done here
// rather than through MemTable::KeyComparator, whose three virtual calls and
// per-comparison perf counters were 6 % of ingestd's writer thread in a burst.
Slice InternalKeyOf(const char* entry) {
  uint32_t size = 0;
  int shift = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(entry);
  for (;; shift += 7) {
    const uint32_t byte = *p++;
    size |= (byte & 0x7f) << shift;
    if (byte < 0x80) break;
  }
  return Slice(reinterpret_cast<const char*>(p), size);
}

static_assert(std::endian::native == std::endian::little, "the trailer is read as RocksDB writes it: little-endian");

uint64_t TrailerOf(const Slice& internal_key) {
  uint64_t n;
  std::memcpy(&n, internal_key.data() + internal_key.size() - 8, 8);  // RocksDB's fixed64
  return n;
}

int CompareInternal(const Slice& a, const Slice& b) {
  const size_t a_user = a.size() - 8;
  const size_t b_user = b.size() - 8;
  const int r = std::memcmp(a.data(), b.data(), std::min(a_user, b_user));
  if (r != 0) return r;
  if (a_user != b_user) return a_user < b_user ? -1 : 1;
  const uint64_t an = TrailerOf(a);
  const uint64_t bn = TrailerOf(b);
  return an > bn ? -1 : (an < bn ? 1 : 0);
}

int CompareEntries(const char* a, const char* b) { return CompareInternal(InternalKeyOf(a), InternalKeyOf(b)); }

class SkipList final : public MemTableRep {
 public:
  explicit SkipList(rocksdb::Allocator* allocator) : MemTableRep(allocator) {
    for (Link& l : head_links_) l.store(nullptr, std::memory_order_relaxed);
    for (const char*& p : last_prev_) p = head_;
  }

  KeyHandle Allocate(const size_t len, char** buf) override {
    const int height = RandomHeight();
    const size_t links = sizeof(Link) * static_cast<size_t>(height);
    char* raw = nullptr;
    MemTableRep::Allocate(links + len + alignof(Link) - 1, &raw);
    auto at = reinterpret_cast<uintptr_t>(raw);
    at = (at + alignof(Link) - 1) & ~(uintptr_t{alignof(Link)} - 1);
    char* entry = reinterpret_cast<char*>(at) + links;
    for (int i = 0; i < height; ++i) new (LinkOf(entry, i)) Link(nullptr);
    // Until the insert, link 0 holds the height (nothing reads the node yet).
    LinkOf(entry, 0)->store(reinterpret_cast<const char*>(static_cast<uintptr_t>(height)), std::memory_order_relaxed);
    *buf = entry;
    return entry;
  }

  void Insert(KeyHandle handle) override { InsertKey(handle); }

  bool InsertKey(KeyHandle handle) override {
    const char* x = static_cast<const char*>(handle);
    const int height = static_cast<int>(reinterpret_cast<uintptr_t>(LinkOf(x, 0)->load(std::memory_order_relaxed)));
    const char* prev[kMaxHeight];
    const int max_height = max_height_.load(std::memory_order_relaxed);
    // Right after the previous insert (a device's next sequence), nothing lies
    // between the two at any level: two comparisons, the second telling a
    // repeat of the same internal key apart too.
    const char* after_last = last_ != nullptr ? Next(last_, 0) : nullptr;
    int next_vs_x = 1;
    bool follows_last = last_ != nullptr && CompareEntries(last_, x) < 0;
    if (follows_last && after_last != nullptr) {
      next_vs_x = CompareEntries(after_last, x);
      follows_last = next_vs_x >= 0;
    }
    if (follows_last) {
      if (next_vs_x == 0) return false;
      for (int i = 0; i < max_height; ++i) prev[i] = i < last_height_ ? last_ : last_prev_[i];
    } else {
      FindLessThan(max_height, [&](const char* e) { return CompareEntries(e, x) < 0; }, prev);
      const char* next = Next(prev[0], 0);
      if (next != nullptr && CompareEntries(next, x) == 0) return false;  // the same internal key
    }
    for (int i = max_height; i < height; ++i) prev[i] = head_;
    for (int i = 0; i < height; ++i) {
      LinkOf(x, i)->store(Next(prev[i], i), std::memory_order_relaxed);
      LinkOf(prev[i], i)->store(x, std::memory_order_release);  // published
    }
    if (height > max_height) max_height_.store(height, std::memory_order_relaxed);
    last_ = x;
    last_height_ = height;
    for (int i = 0; i < kMaxHeight; ++i) last_prev_[i] = i < std::max(height, max_height) ? prev[i] : head_;
    return true;
  }

  bool Contains(const char* key) const override {
    const char* x = FindGreaterOrEqual([&](const char* e) { return CompareEntries(e, key) < 0; });
    return x != nullptr && CompareEntries(x, key) == 0;
  }

  void Get(const rocksdb::LookupKey& k, void* callback_args,
           bool (*callback_func)(void* arg, const char* entry)) override {
    // LookupKey is RocksDB's internal class (db/lookup_key.h, not installed): a
    // standard-layout class whose first member points at the memtable key,
    // which is what this reads. Every point read of the store goes through
    // here, so a RocksDB that changed it would fail the store's tests.
    const char* target = *reinterpret_cast<const char* const*>(&k);
    for (const char* x = FindGreaterOrEqual([&](const char* e) { return CompareEntries(e, target) < 0; });
         x != nullptr && callback_func(callback_args, x); x = Next(x, 0)) {
    }
  }

  size_t ApproximateMemoryUsage() override { return 0; }  // all of it is in the allocator

  class Iterator final : public MemTableRep::Iterator {
   public:
    explicit Iterator(const SkipList* list) : list_(list) {}
    bool Valid() const override { return at_ != nullptr; }
    const char* key() const override { return at_; }
    void Next() override { at_ = SkipList::Next(at_, 0); }
    void Prev() override {
      const char* at = at_;
      at_ = list_->Last([&](const char* e) { return CompareEntries(e, at) < 0; });
    }
    // The target is given either way: as RocksDB's memtable key, or when
    // that is null as an internal key.
    void Seek(const Slice& internal_key, const char* memtable_key) override {
      at_ = list_->FindGreaterOrEqual(
          [&](const char* e) { return list_->CompareToTarget(e, internal_key, memtable_key) < 0; });
    }
    void SeekForPrev(const Slice& internal_key, const char* memtable_key) override {
      at_ = list_->Last([&](const char* e) { return list_->CompareToTarget(e, internal_key, memtable_key) <= 0; });
    }
    void SeekToFirst() override { at_ = SkipList::Next(list_->head_, 0); }
    void SeekToLast() override {
      at_ = list_->Last([](const char*) { return true; });
    }

   private:
    const SkipList* list_;
    const char* at_ = nullptr;
  };

  MemTableRep::Iterator* GetIterator(rocksdb::Arena* arena) override {
    if (arena == nullptr) return new Iterator(this);
    return new (arena->AllocateAligned(sizeof(Iterator), 0, nullptr)) Iterator(this);
  }

 private:
  static const char* Next(const char* entry, int level) {
    return LinkOf(entry, level)->load(std::memory_order_acquire);
  }

  static int CompareToTarget(const char* e, const Slice& internal_key, const char* memtable_key) {
    return memtable_key != nullptr ? CompareEntries(e, memtable_key) : CompareInternal(InternalKeyOf(e), internal_key);
  }

  // The first entry for which below(e) is false; nullptr when none.
  template <typename Below>
  // The answer is the link read last at level 0, never read again: an entry
  // the writer links in meanwhile right after x may sort before the target
  // (a newer version of the key a snapshot read asks for: a get returned a
  // value the snapshot must not see, until this was fixed).
  const char* FindGreaterOrEqual(const Below& below) const {
    const char* x = head_;
    const char* next = nullptr;
    for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level) {
      for (next = Next(x, level); next != nullptr && below(next); next = Next(x, level)) x = next;
    }
    return next;
  }

  // For each level, the last node whose entry is below; the head when none.
  template <typename Below>
  void FindLessThan(int max_height, const Below& below, const char** prev) const {
    const char* x = head_;
    for (int level = max_height - 1; level >= 0; --level) {
      for (const char* next = Next(x, level); next != nullptr && below(next); next = Next(x, level)) x = next;
      prev[level] = x;
    }
  }

  // The last entry for which below(e) holds; nullptr when none.
  template <typename Below>
  const char* Last(const Below& below) const {
    const char* prev[kMaxHeight];
    FindLessThan(max_height_.load(std::memory_order_relaxed), below, prev);
    return prev[0] == head_ ? nullptr : prev[0];
  }

  int RandomHeight() {
    int height = 1;
    while (height < kMaxHeight && NextRandom() % kBranching == 0) ++height;
    return height;
  }
  uint32_t NextRandom() {  // xorshift32; the writer's alone
    random_ ^= random_ << 13;
    random_ ^= random_ >> 17;
    random_ ^= random_ << 5;
    return random_;
  }

  Link head_links_[kMaxHeight];
  // The head's "entry": just past its links, as for every node.
  const char* const head_ = reinterpret_cast<const char*>(head_links_ + kMaxHeight);
  std::atomic<int> max_height_{1};
  // The writer's own: the previous insert and its predecessors.
  const char* last_ = nullptr;
  int last_height_ = 0;
  const char* last_prev_[kMaxHeight];
  uint32_t random_ = 0x9e3779b9u;
};

class SkipListFactory final : public rocksdb::MemTableRepFactory {
 public:
  // RocksDB's comparator is not asked: the list orders as CompareEntries does.
  MemTableRep* CreateMemTableRep(const MemTableRep::KeyComparator&, rocksdb::Allocator* allocator,
                                 const rocksdb::SliceTransform*, rocksdb::Logger*) override {
    return new SkipList(allocator);
  }
  const char* Name() const override { return "RollerTraceSkipList"; }
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> NewSkipListMemTable() { return std::make_shared<SkipListFactory>(); }

}  // namespace rollertrace::store
