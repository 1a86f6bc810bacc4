#include "store/chain.h"

// SHA256_* (below): deprecated by OpenSSL 3 in favour of EVP, still supported.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <cstdio>
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
std::string Sha256Of(std::string_view a, std::string_view b) {
  SHA256_CTX context;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  if (SHA256_Init(&context) != 1 || SHA256_Update(&context, a.data(), a.size()) != 1 ||
      SHA256_Update(&context, b.data(), b.size()) != 1 || SHA256_Final(digest, &context) != 1) {
    // Only when OpenSSL cannot give SHA-256 at all: a chain cannot be written.
    std::fprintf(stderr, "rollertrace: OpenSSL's SHA-256 failed\n");
    std::abort();
  }
  return std::string(reinterpret_cast<char*>(digest), SHA256_DIGEST_LENGTH);
}

std::string EventChainHash(std::string_view prev_hash, uint64_t chain_index, int64_t receive_unix_ms,
                           std::string_view event_bytes) {
  std::string head(prev_hash);
  AppendBigEndian64(&head, chain_index);
  AppendBigEndian64(&head, static_cast<uint64_t>(receive_unix_ms));
  return Sha256Of(head, event_bytes);
}

}  // namespace

std::string Sha256(std::string_view bytes) { return Sha256Of(bytes, {}); }

std::string LedgerHash(const rollertrace::v1::LedgerEntry& entry) {
  rollertrace::v1::LedgerEntry unhashed = entry;
  unhashed.clear_hash();
  return Sha256Of(entry.prev_hash(), unhashed.SerializeAsString());
}

std::string ChainHash(const rollertrace::v1::StoredEvent& stored) {
  return EventChainHash(stored.prev_hash(), stored.chain_index(), stored.receive_unix_ms(),
                        stored.event().SerializeAsString());
}

void EncodeStoredEvent(const rollertrace::v1::Event& event, int64_t receive_unix_ms,
                       rollertrace::v1::DeviceState* state, std::string* out) {
  const std::string event_bytes = event.SerializeAsString();
  const uint64_t index = state->chain_length() + 1;
  std::string hash = EventChainHash(state->chain_head(), index, receive_unix_ms, event_bytes);
  // StoredEvent's wire form without a copy of the event: field 1 (the event)
  // followed by the other fields; protobuf reads the concatenation as one message.
  out->clear();
  out->push_back(static_cast<char>((1 << 3) | 2));
  for (uint64_t n = event_bytes.size();; n >>= 7) {
    if (n < 0x80) {
      out->push_back(static_cast<char>(n));
      break;
    }
    out->push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  out->append(event_bytes);
  rollertrace::v1::StoredEvent rest;
  rest.set_receive_unix_ms(receive_unix_ms);
  rest.set_chain_index(index);
  rest.set_prev_hash(state->chain_head());
  rest.set_hash(hash);
  rest.AppendToString(out);
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
