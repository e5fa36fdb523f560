// The field table of flow-log versions 2 to 5 and the parsing of AWS's
// `${field}` format syntax.
#include "vpcfw/flowlog/format.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "vpcfw/base/diagnostic.h"

namespace vpcfw::flowlog {
namespace {

constexpr std::array<FieldInfo, 29> kFields{{
    {Field::kVersion, "version", 2, "the record's version: the highest version of the format's fields"},
    {Field::kAccountId, "account-id", 2, "the flow log's account_id (default 123456789010)"},
    {Field::kInterfaceId, "interface-id", 2, "the ENI: eni- and 17 hex digits derived from the instance's name"},
    {Field::kSrcAddr, "srcaddr", 2,
     "the source: the ENI's private address for its own outgoing traffic, else the packet's source"},
    {Field::kDstAddr, "dstaddr", 2,
     "the destination: the ENI's private address for its incoming traffic, else the packet's destination"},
    {Field::kSrcPort, "srcport", 2, "the source port (0 for ICMP and other protocols without ports)"},
    {Field::kDstPort, "dstport", 2, "the destination port (0 for ICMP and other protocols without ports)"},
    {Field::kProtocol, "protocol", 2, "the IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)"},
    {Field::kPackets, "packets", 2, "packets of the flow in the interval"},
    {Field::kBytes, "bytes", 2, "bytes of those packets (IP header included)"},
    {Field::kStart, "start", 2, "Unix seconds of the first packet in the interval (NODATA/SKIPDATA: its start)"},
    {Field::kEnd, "end", 2, "Unix seconds of the last packet in the interval (NODATA/SKIPDATA: its end)"},
    {Field::kAction, "action", 2, "ACCEPT, or REJECT when a network ACL or security group dropped it"},
    {Field::kLogStatus, "log-status", 2,
     "OK; NODATA: no traffic on the ENI in the interval; SKIPDATA: records were lost"},
    {Field::kVpcId, "vpc-id", 3, "the ENI's VPC: vpc- and 17 hex digits derived from its name"},
    {Field::kSubnetId, "subnet-id", 3, "the ENI's subnet: subnet- and 17 hex digits derived from its name"},
    {Field::kInstanceId, "instance-id", 3, "the instance: i- and 17 hex digits derived from its name"},
    {Field::kTcpFlags, "tcp-flags", 3, "OR of FIN 1, SYN 2, RST 4 and SYN-ACK 18 seen in the interval (0: none)"},
    {Field::kType, "type", 3, "IPv4 or IPv6"},
    {Field::kPktSrcAddr, "pkt-srcaddr", 3, "the source address on the packet as it crossed the ENI"},
    {Field::kPktDstAddr, "pkt-dstaddr", 3, "the destination address on the packet as it crossed the ENI"},
    {Field::kRegion, "region", 4, "the config's region"},
    {Field::kAzId, "az-id", 4, "the subnet's availability_zone, '-' when it has none"},
    {Field::kSublocationType, "sublocation-type", 4, "always '-': there are no Wavelength zones or Outposts here"},
    {Field::kSublocationId, "sublocation-id", 4, "always '-'"},
    {Field::kPktSrcAwsService, "pkt-src-aws-service", 5, "always '-': there are no AWS services here"},
    {Field::kPktDstAwsService, "pkt-dst-aws-service", 5, "always '-'"},
    {Field::kFlowDirection, "flow-direction", 5, "ingress or egress, relative to the ENI"},
    {Field::kTrafficPath, "traffic-path", 5,
     "egress only: 1 same VPC, 2 internet gateway, 4 intra-region peering; '-' for ingress"},
}};

static_assert(static_cast<std::size_t>(Field::kTrafficPath) + 1 == kFields.size());

}  // namespace

std::span<const FieldInfo> fieldTable() { return kFields; }

const FieldInfo& fieldInfo(Field f) { return kFields[static_cast<std::size_t>(f)]; }

std::optional<Field> fieldNamed(std::string_view name) {
  for (const auto& f : kFields)
    if (f.name == name) return f.field;
  return std::nullopt;
}

Format Format::defaultFormat() {
  Format f;
  for (const auto& info : kFields)
    if (info.version == 2) f.fields_.push_back(info.field);
  return f;
}

Expected<Format> Format::parse(std::string_view text) {
  Format f;
  std::size_t i = 0;
  auto at = [](std::size_t k) { return k + 1; };
  while (i < text.size()) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    if (text.substr(i, 2) != "${") {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("character {}: expected ${{field}}, not {}", at(i),
                                   quoteForMessage(text.substr(i, std::min<std::size_t>(16, text.size() - i)))));
    }
    const std::size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos)
      return makeError(ErrorCode::kInvalidArgument, fmt::format("character {}: '${{' without its '}}'", at(i)));
    const std::string_view name = text.substr(i + 2, close - i - 2);
    const auto field = fieldNamed(name);
    if (!field)
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("character {}: unknown field {} (vpcfw knows the fields of versions 2 to 5)", at(i),
                                   quoteForMessage(name)));
    if (f.has(*field))
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("character {}: field '{}' is given twice", at(i), fieldInfo(*field).name));
    f.fields_.push_back(*field);
    i = close + 1;
    if (i < text.size() && text[i] != ' ')
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("character {}: fields must be separated by spaces", at(i)));
  }
  if (f.fields_.empty()) return makeError(ErrorCode::kInvalidArgument, "the format names no field");
  return f;
}

Expected<Format> Format::fromHeader(std::string_view header) {
  Format f;
  std::size_t i = 0;
  while (i < header.size()) {
    if (header[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t end = header.find(' ', i);
    if (end == std::string_view::npos) end = header.size();
    const std::string_view name = header.substr(i, end - i);
    const auto field = fieldNamed(name);
    if (!field)
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("the header names an unknown field {}", quoteForMessage(name)));
    if (f.has(*field))
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("the header names field '{}' twice", fieldInfo(*field).name));
    f.fields_.push_back(*field);
    i = end;
  }
  if (f.fields_.empty()) return makeError(ErrorCode::kInvalidArgument, "the header names no field");
  return f;
}

int Format::version() const {
  int v = 2;
  for (auto f : fields_) v = std::max(v, fieldInfo(f).version);
  return v;
}

bool Format::has(Field f) const { return std::find(fields_.begin(), fields_.end(), f) != fields_.end(); }

std::string Format::text() const {
  std::string out;
  for (auto f : fields_) {
    if (!out.empty()) out += ' ';
    out += fmt::format("${{{}}}", fieldInfo(f).name);
  }
  return out;
}

std::string Format::header() const {
  std::string out;
  for (auto f : fields_) {
    if (!out.empty()) out += ' ';
    out += fieldInfo(f).name;
  }
  return out;
}

Expected<Format> formatOf(const model::FlowLog& log) {
  if (log.logFormat.empty()) return Format::defaultFormat();
  return Format::parse(log.logFormat);
}

}  // namespace vpcfw::flowlog
