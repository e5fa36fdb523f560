// The fields of AWS VPC flow-log records (versions 2 to 5) and the record
// formats built from them: AWS's `${field} ${field} ...` syntax, parsed into
// a field list whose version is the highest of its fields. Pure; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/model/model.h"

namespace vpcfw::flowlog {

enum class Field : std::uint8_t {
  // version 2 (the default format, in this order)
  kVersion,
  kAccountId,
  kInterfaceId,
  kSrcAddr,
  kDstAddr,
  kSrcPort,
  kDstPort,
  kProtocol,
  kPackets,
  kBytes,
  kStart,
  kEnd,
  kAction,
  kLogStatus,
  // version 3
  kVpcId,
  kSubnetId,
  kInstanceId,
  kTcpFlags,
  kType,
  kPktSrcAddr,
  kPktDstAddr,
  // version 4
  kRegion,
  kAzId,
  kSublocationType,
  kSublocationId,
  // version 5
  kPktSrcAwsService,
  kPktDstAwsService,
  kFlowDirection,
  kTrafficPath,
};

struct FieldInfo {
  Field field;
  std::string_view name;     // as AWS spells it: "pkt-srcaddr"
  int version;               // the format version that introduced it
  std::string_view meaning;  // what it holds in vpcfw's records
};

// Every field, in Field order.
std::span<const FieldInfo> fieldTable();
const FieldInfo& fieldInfo(Field f);
std::optional<Field> fieldNamed(std::string_view name);

// A record format: the fields in the order they are printed.
class Format {
 public:
  // AWS's default format: the version-2 fields in table order.
  static Format defaultFormat();
  // "${version} ${srcaddr} ...": fields separated by one or more spaces;
  // unknown names, repeated fields, text outside ${...} and an empty format
  // are errors whose message says which field and where (1-based character).
  static Expected<Format> parse(std::string_view text);
  // The format for the field names of a file's header line ("version srcaddr ...").
  static Expected<Format> fromHeader(std::string_view header);

  const std::vector<Field>& fields() const { return fields_; }
  // The highest version of its fields (AWS prints it in the version field).
  int version() const;
  // "${version} ${account-id} ...", as AWS shows a flow log's format.
  std::string text() const;
  // "version account-id ...": the header line of a file.
  std::string header() const;
  bool has(Field f) const;

  bool operator==(const Format&) const = default;

 private:
  std::vector<Field> fields_;
};

// A flow log's format: its log_format, or version 2's default when it has none.
[[nodiscard]] Expected<Format> formatOf(const model::FlowLog& log);

}  // namespace vpcfw::flowlog
