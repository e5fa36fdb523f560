// What a lab made, as recorded in its state file (state::Dir "lab",
// <key>.state): the config it was built from and, for each namespace it
// created, the nsfs identity (device and inode of /run/netns/NAME after the
// bind mount). The identity is the ownership marker: vpcfw deletes or changes
// a namespace only when its record names it with the identity it has now, so
// a foreign namespace, or another lab's, is never touched whatever its name.
//
// The file is untrusted input (hardening.md §2): parseRecord accepts only
// the exact format formatRecord writes, and any other line is an error for
// the whole file, never acted on.
//
//   vpcfw-lab-state 1
//   config /absolute/path/of/the/config.yaml
//   ns vpcfw-shop 4:4026532288
//   ns vpcfw:i:web1 4:4026532350
//   internet vpcfw:internet 4:4026532301
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"

namespace vpcfw::lab {

struct NsId {  // st_dev / st_ino of a namespace's nsfs inode
  std::uint64_t dev = 0, ino = 0;
  bool operator==(const NsId&) const = default;
};
std::string describe(const NsId& id);  // "4:4026532288"

struct NsRecord {
  std::string name;
  NsId id;
  bool shared = false;  // the internet namespace: several labs may record it; the last one removes it
};

struct LabRecord {
  std::string config;                // the config's absolute path
  std::vector<NsRecord> namespaces;  // in the order they were made
  const NsRecord* find(std::string_view name) const;
  void add(std::string name, NsId id, bool shared = false);  // replaces an entry of that name
  void remove(std::string_view name);
};

inline constexpr std::string_view kRecordMagic = "vpcfw-lab-state 1";
inline constexpr std::size_t kRecordMaxBytes = 1 << 20;

std::string formatRecord(const LabRecord& r);
// Errors (kInvalidArgument, naming the line): a missing or other header, a
// config path that is not absolute or holds control characters, a line that
// is not `ns|internet NAME DEV:INO` with NAME a valid namespace name
// (names::isValidNamespaceName) and DEV, INO decimal numbers > 0, a name
// recorded twice, more than one internet.
[[nodiscard]] Expected<LabRecord> parseRecord(std::string_view text);

// The state file's name for a config: a hash of its absolute path
// ("lab-<16 hex>.state"); the record's header says which config it is, so a
// collision is detected, not trusted.
std::string recordKey(const std::string& absoluteConfig);
std::string recordFile(const std::string& key);  // "<key>.state"

}  // namespace vpcfw::lab
