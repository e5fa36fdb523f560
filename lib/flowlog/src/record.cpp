// Rendering records field by field, exactly as AWS prints them.
#include "vpcfw/flowlog/record.h"

#include <fmt/format.h>

namespace vpcfw::flowlog {

std::string_view actionName(Action a) { return a == Action::kAccept ? "ACCEPT" : "REJECT"; }

std::optional<Action> parseAction(std::string_view text) {
  if (text == "ACCEPT") return Action::kAccept;
  if (text == "REJECT") return Action::kReject;
  return std::nullopt;
}

std::string_view logStatusName(LogStatus s) {
  switch (s) {
    case LogStatus::kOk:
      return "OK";
    case LogStatus::kNoData:
      return "NODATA";
    case LogStatus::kSkipData:
      return "SKIPDATA";
  }
  return "OK";
}

std::optional<LogStatus> parseLogStatus(std::string_view text) {
  for (auto s : {LogStatus::kOk, LogStatus::kNoData, LogStatus::kSkipData})
    if (logStatusName(s) == text) return s;
  return std::nullopt;
}

std::string_view directionName(FlowDirection d) { return d == FlowDirection::kIngress ? "ingress" : "egress"; }

std::uint8_t awsTcpFlags(std::uint8_t headerFlags) {
  std::uint8_t out = headerFlags & (kTcpFin | kTcpSyn | kTcpRst);
  if ((headerFlags & kTcpSyn) && (headerFlags & kTcpAck)) out |= kTcpAck;
  return out;
}

std::string awsId(std::string_view prefix, std::string_view name) {
  // FNV-1a over the name, then once more over the prefix, so that a VPC and a
  // subnet of the same name get different digits; 68 bits from two rounds.
  auto fnv = [](std::string_view s, std::uint64_t h) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
    return h;
  };
  const std::uint64_t a = fnv(prefix, fnv(name, 0xcbf29ce484222325ULL));
  const std::uint64_t b = fnv("vpcfw", a);
  return fmt::format("{}-{:016x}{:01x}", prefix, a, b & 0xf);
}

std::string render(const Record& r, const Format& format) {
  const bool ok = r.status == LogStatus::kOk;
  std::string out;
  out.reserve(160);
  auto put = [&](std::string_view v) {
    if (!out.empty()) out += ' ';
    out += v.empty() ? std::string_view("-") : v;
  };
  auto num = [&](std::uint64_t v) { put(fmt::format("{}", v)); };
  for (Field f : format.fields()) {
    switch (f) {
      case Field::kVersion:
        num(static_cast<std::uint64_t>(format.version()));
        break;
      case Field::kAccountId:
        put(r.accountId);
        break;
      case Field::kInterfaceId:
        put(r.eni.interfaceId);
        break;
      case Field::kSrcAddr:
        put(ok ? r.srcAddr.toString() : "-");
        break;
      case Field::kDstAddr:
        put(ok ? r.dstAddr.toString() : "-");
        break;
      case Field::kSrcPort:
        ok ? num(r.srcPort) : put("-");
        break;
      case Field::kDstPort:
        ok ? num(r.dstPort) : put("-");
        break;
      case Field::kProtocol:
        ok ? num(r.protocol) : put("-");
        break;
      case Field::kPackets:
        ok ? num(r.packets) : put("-");
        break;
      case Field::kBytes:
        ok ? num(r.bytes) : put("-");
        break;
      case Field::kStart:
        put(fmt::format("{}", r.start));
        break;
      case Field::kEnd:
        put(fmt::format("{}", r.end));
        break;
      case Field::kAction:
        put(ok ? actionName(r.action) : "-");
        break;
      case Field::kLogStatus:
        put(logStatusName(r.status));
        break;
      case Field::kVpcId:
        put(r.eni.vpcId);
        break;
      case Field::kSubnetId:
        put(r.eni.subnetId);
        break;
      case Field::kInstanceId:
        put(r.eni.instanceId);
        break;
      case Field::kTcpFlags:
        ok ? num(r.tcpFlags) : put("-");
        break;
      case Field::kType:
        put(ok ? net::familyName(r.srcAddr.family()) : "-");
        break;
      case Field::kPktSrcAddr:
        put(ok ? r.pktSrcAddr.toString() : "-");
        break;
      case Field::kPktDstAddr:
        put(ok ? r.pktDstAddr.toString() : "-");
        break;
      case Field::kRegion:
        put(r.region);
        break;
      case Field::kAzId:
        put(r.eni.azId);
        break;
      case Field::kSublocationType:
      case Field::kSublocationId:
      case Field::kPktSrcAwsService:
      case Field::kPktDstAwsService:
        put("-");
        break;
      case Field::kFlowDirection:
        put(ok ? directionName(r.direction) : "-");
        break;
      case Field::kTrafficPath:
        if (ok && r.direction == FlowDirection::kEgress && r.trafficPath)
          num(static_cast<std::uint64_t>(*r.trafficPath));
        else
          put("-");
        break;
    }
  }
  return out;
}

}  // namespace vpcfw::flowlog
