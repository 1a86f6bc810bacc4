#include "store/chain.h"

// SHA256_* (below): deprecated by OpenSSL 3 in favour of EVP, still supported.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <cstdio>
#include <initializer_list>
#include <cstdlib>

#include "store/keys.h"

namespace rollertrace::store {
namespace {

// SHA-256 of a || b, through OpenSSL's SHA256_* functions (the same
// assembly, SHA extensions included, as EVP's). They are deprecated in
// OpenSSL 3 for EVP, whose one-shot SHA256() looks the algorithm up on every
// call (three times the cost of an event's hash, measured) and whose
// EVP_DigestInit_ex2 still allocates on each (a quarter of the hash's time in
// ingestd's writer: docs/BENCHMARKS.md, seventh session). Same digest either way.
std::string Sha256Of(std::initializer_list<std::string_view> parts) {
  SHA256_CTX context;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  bool ok = SHA256_Init(&context) == 1;
  for (std::string_view part : parts) ok = ok && SHA256_Update(&context, part.data(), part.size()) == 1;
  if (!ok || SHA256_Final(digest, &context) != 1) {
    // Only when OpenSSL cannot give SHA-256 at all: a chain cannot be written.
    std::fprintf(stderr, "rollertrace: OpenSSL's SHA-256 failed\n");
    std::abort();
  }
  return std::string(reinterpret_cast<char*>(digest), SHA256_DIGEST_LENGTH);
}

std::string EventChainHash(std::string_view prev_hash, uint64_t chain_index, int64_t receive_unix_ms,
                           std::string_view event_bytes) {
  char numbers[16];
  PutBigEndian64(numbers, chain_index);
  PutBigEndian64(numbers + 8, static_cast<uint64_t>(receive_unix_ms));
  return Sha256Of({prev_hash, std::string_view(numbers, sizeof numbers), event_bytes});
}

// Protobuf's wire form, for the fields EncodeStoredEvent writes by hand.
void AppendVarint(std::string* out, uint64_t n) {
  for (; n >= 0x80; n >>= 7) out->push_back(static_cast<char>((n & 0x7f) | 0x80));
  out->push_back(static_cast<char>(n));
}

void AppendBytesField(std::string* out, int field, std::string_view bytes) {
  if (bytes.empty()) return;  // proto3: an empty field is not written
  AppendVarint(out, static_cast<uint64_t>(field) << 3 | 2);
  AppendVarint(out, bytes.size());
  out->append(bytes);
}

void AppendVarintField(std::string* out, int field, uint64_t n) {
  if (n == 0) return;
  AppendVarint(out, static_cast<uint64_t>(field) << 3);
  AppendVarint(out, n);
}

}  // namespace

std::string Sha256(std::string_view bytes) { return Sha256Of({bytes}); }

std::string LedgerHash(const rollertrace::v1::LedgerEntry& entry) {
  rollertrace::v1::LedgerEntry unhashed = entry;
  unhashed.clear_hash();
  return Sha256Of({entry.prev_hash(), unhashed.SerializeAsString()});
}

std::string ChainHash(const rollertrace::v1::StoredEvent& stored) {
  return EventChainHash(stored.prev_hash(), stored.chain_index(), stored.receive_unix_ms(),
                        stored.event().SerializeAsString());
}

void EncodeStoredEvent(const rollertrace::v1::Event& event, int64_t receive_unix_ms,
                       rollertrace::v1::DeviceState* state, std::string* out) {
  // StoredEvent's wire form, written as protobuf would (fields in number
  // order, proto3 defaults left out; ChainTest compares the two): the event
  // serialised in place, the other fields by hand, with no message built.
  const size_t event_size = event.ByteSizeLong();
  out->clear();
  AppendVarint(out, (1 << 3) | 2);
  AppendVarint(out, event_size);
  const size_t event_at = out->size();
  out->resize(event_at + event_size);
  event.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out->data() + event_at));
  const uint64_t index = state->chain_length() + 1;
  std::string hash =
      EventChainHash(state->chain_head(), index, receive_unix_ms, std::string_view(*out).substr(event_at));
  AppendVarintField(out, 2, static_cast<uint64_t>(receive_unix_ms));
  AppendVarintField(out, 3, index);
  AppendBytesField(out, 4, state->chain_head());
  AppendBytesField(out, 5, hash);
  state->set_chain_length(index);
  state->set_chain_head(std::move(hash));
}

rollertrace::v1::LedgerEntry NextLedgerEntry(rollertrace::v1::DeviceState* state, std::string_view kind,
                                             std::string_view key, std::string content_hash, int64_t unix_ms) {
  rollertrace::v1::LedgerEntry entry;
  entry.set_index(state->records_length() + 1);
  entry.set_kind(std::string(kind));
  entry.set_key(std::string(key));
  entry.set_content_hash(std::move(content_hash));
  entry.set_unix_ms(unix_ms);
  entry.set_prev_hash(state->records_head());
  entry.set_hash(LedgerHash(entry));
  state->set_records_length(entry.index());
  state->set_records_head(entry.hash());
  return entry;
}

}  // namespace rollertrace::store
