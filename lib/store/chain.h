// Tamper evidence, pure: the hashes of both chains a device has
// (docs/ARCHITECTURE.md, "Two chains per device"). No I/O here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rollertrace/v1/records.pb.h"

namespace rollertrace::store {

std::string Sha256(std::string_view bytes);
// A stored event's hash:
// SHA-256(prev_hash || be64(chain_index) || be64(receive_unix_ms) || the event's bytes).
std::string ChainHash(const rollertrace::v1::StoredEvent& stored);
// SHA-256 of a record-chain entry: over its prev_hash and the entry with `hash` empty.
std::string LedgerHash(const rollertrace::v1::LedgerEntry& entry);
// The StoredEvent bytes for `event`, linked to its device's event chain (which advances).
void EncodeStoredEvent(const rollertrace::v1::Event& event, int64_t receive_unix_ms,
                       rollertrace::v1::DeviceState* state, std::string* out);
// The next entry of `state`'s record chain, naming the record `kind`/`key`
// whose bytes hash to `content_hash`; the chain's head advances to it.
rollertrace::v1::LedgerEntry NextLedgerEntry(rollertrace::v1::DeviceState* state, std::string_view kind,
                                             std::string_view key, std::string content_hash, int64_t unix_ms);

}  // namespace rollertrace::store
