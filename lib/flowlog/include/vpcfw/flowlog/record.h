// A flow-log record and its rendering in a format: one line of space-separated
// values, `-` where a field does not apply, NODATA and SKIPDATA rows as AWS
// prints them. Also the AWS-shaped identifiers vpcfw gives its objects. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vpcfw/flowlog/format.h"
#include "vpcfw/net/address.h"

namespace vpcfw::flowlog {

enum class Action : std::uint8_t { kAccept, kReject };
enum class LogStatus : std::uint8_t { kOk, kNoData, kSkipData };
enum class FlowDirection : std::uint8_t { kIngress, kEgress };
// AWS's traffic-path values that occur here (3, 5 to 8 are gateways vpcfw has not).
enum class TrafficPath : std::uint8_t { kSameVpc = 1, kInternetGateway = 2, kIntraRegionPeering = 4 };

std::string_view actionName(Action a);  // "ACCEPT" / "REJECT"
std::optional<Action> parseAction(std::string_view text);
std::string_view logStatusName(LogStatus s);  // "OK" / "NODATA" / "SKIPDATA"
std::optional<LogStatus> parseLogStatus(std::string_view text);
std::string_view directionName(FlowDirection d);  // "ingress" / "egress"

// AWS's tcp-flags bits: FIN 1, SYN 2, RST 4, and ACK 16 only beside SYN
// (SYN-ACK 18); ACK, PSH, URG alone are not recorded.
inline constexpr std::uint8_t kTcpFin = 1, kTcpSyn = 2, kTcpRst = 4, kTcpAck = 16;
// The bits AWS records for one packet whose TCP header carries `flags` (the
// header's flag byte: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
std::uint8_t awsTcpFlags(std::uint8_t headerFlags);

// "PREFIX-" and 17 lowercase hex digits from a hash of `name`: stable across
// runs and machines, shaped like AWS's ids (eni-, vpc-, subnet-, i-, fl-).
std::string awsId(std::string_view prefix, std::string_view name);

// The identity of an ENI in its records.
struct EniIdentity {
  std::string interfaceId;  // eni-...
  std::string vpcId, subnetId, instanceId;
  std::string azId;  // empty: '-'
};

// One record, whatever the format; fields a format leaves out are ignored.
struct Record {
  LogStatus status = LogStatus::kOk;
  std::string accountId;
  EniIdentity eni;
  std::string region;
  // OK records only:
  net::IpAddress srcAddr, dstAddr, pktSrcAddr, pktDstAddr;
  std::uint16_t srcPort = 0, dstPort = 0;
  std::uint8_t protocol = 0;
  std::uint64_t packets = 0, bytes = 0;
  std::uint8_t tcpFlags = 0;
  Action action = Action::kAccept;
  FlowDirection direction = FlowDirection::kIngress;
  std::optional<TrafficPath> trafficPath;  // egress only
  // Every record:
  std::int64_t start = 0, end = 0;  // Unix seconds

  bool operator==(const Record&) const = default;
};

// The record as one line in `format` (no newline). `version` is the format's.
std::string render(const Record& r, const Format& format);

}  // namespace vpcfw::flowlog
