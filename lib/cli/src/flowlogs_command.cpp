// `vpcfw flowlogs show`: flow-log files read back (an S3-layout tree, one
// .log.gz, or stream files), filtered, printed as aligned columns or JSON lines.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <ctime>
#include <memory>
#include <ostream>

#include "commands.h"
#include "vpcfw/base/diagnostic.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/flowlog/reader.h"
#include "vpcfw/net/address.h"

namespace vpcfw::cli {
namespace {

using flowlog::Field;

struct ShowOptions {
  std::string path;
  std::string eni, action, addr, since, until;
  int port = -1;
  bool json = false;
};

std::optional<std::int64_t> number(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Unix seconds, or YYYY-MM-DDTHH:MM[:SS]Z (UTC).
std::optional<std::int64_t> parseTime(std::string_view s) {
  if (auto n = number(s)) return n;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  char z = 0;
  const std::string text(s);
  int used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &y, &mo, &d, &h, &mi, &sec, &z, &used) == 7 &&
      z == 'Z' && used == static_cast<int>(text.size())) {
  } else if (sec = 0; std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d%c%n", &y, &mo, &d, &h, &mi, &z, &used) == 6 &&
                      z == 'Z' && used == static_cast<int>(text.size())) {
  } else {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<std::int64_t>(::timegm(&tm));
}

struct Filter {
  std::optional<std::string> eni, action;
  std::optional<net::IpAddress> addr;
  int port = -1;
  std::optional<std::int64_t> since, until;

  bool matches(const flowlog::RowView& row) const {
    if (eni && row.get(Field::kInterfaceId) != std::string_view(*eni)) return false;
    if (action && row.get(Field::kAction) != std::string_view(*action)) return false;
    if (addr) {
      bool hit = false;
      for (Field f : {Field::kSrcAddr, Field::kDstAddr, Field::kPktSrcAddr, Field::kPktDstAddr}) {
        auto v = row.get(f);
        if (!v) continue;
        auto a = net::IpAddress::parse(*v);
        hit = hit || (a && *a == *addr);
      }
      if (!hit) return false;
    }
    if (port >= 0) {
      const std::string p = std::to_string(port);
      if (row.get(Field::kSrcPort) != std::string_view(p) && row.get(Field::kDstPort) != std::string_view(p))
        return false;
    }
    if (since || until) {
      auto start = row.get(Field::kStart), end = row.get(Field::kEnd);
      auto s = start ? number(*start) : std::nullopt, e = end ? number(*end) : std::nullopt;
      if (!s && !e) return false;
      const std::int64_t first = s ? *s : *e, last = e ? *e : *s;
      if (since && last < *since) return false;
      if (until && first > *until) return false;
    }
    return true;
  }
};

bool numeric(Field f) {
  switch (f) {
    case Field::kVersion:
    case Field::kSrcPort:
    case Field::kDstPort:
    case Field::kProtocol:
    case Field::kPackets:
    case Field::kBytes:
    case Field::kStart:
    case Field::kEnd:
    case Field::kTcpFlags:
    case Field::kTrafficPath:
      return true;
    default:
      return false;
  }
}

// Rows of one format, printed in blocks so that memory stays bounded; each
// block's columns are as wide as its widest value.
class Table {
 public:
  explicit Table(std::ostream& out) : out_(out) {}
  ~Table() { flush(); }

  void add(const flowlog::RowView& row) {
    if (!format_ || !(*format_ == row.format)) {
      flush();
      format_ = row.format;
      header_ = true;
    }
    rows_.emplace_back(row.values.begin(), row.values.end());
    if (rows_.size() >= kBlock) flush();
  }

  void flush() {
    if (!format_ || (rows_.empty() && !header_)) return;
    const auto& fields = format_->fields();
    std::vector<std::size_t> width(fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) width[i] = flowlog::fieldInfo(fields[i]).name.size();
    for (const auto& r : rows_)
      for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    auto line = [&](auto value) {
      std::string text;
      for (std::size_t i = 0; i < fields.size(); ++i) {
        const std::string v = value(i);
        text += v;
        if (i + 1 < fields.size()) text += std::string(width[i] - v.size() + 2, ' ');
      }
      out_ << text << '\n';
    };
    if (header_) line([&](std::size_t i) { return std::string(flowlog::fieldInfo(fields[i]).name); });
    header_ = false;
    for (const auto& r : rows_) line([&](std::size_t i) { return r[i]; });
    rows_.clear();
  }

 private:
  static constexpr std::size_t kBlock = 4096;
  std::ostream& out_;
  std::optional<flowlog::Format> format_;
  bool header_ = false;
  std::vector<std::vector<std::string>> rows_;
};

int showCommand(const ShowOptions& o, std::ostream& out, std::ostream& err) {
  Filter filter;
  if (!o.eni.empty()) filter.eni = o.eni;
  if (!o.action.empty()) filter.action = o.action;
  if (!o.addr.empty()) {
    auto a = net::IpAddress::parse(o.addr);
    if (!a) {
      err << fmt::format("vpcfw flowlogs show: --addr {}: {}\n", quoteForMessage(o.addr), a.error());
      return kExitUsage;
    }
    filter.addr = *a;
  }
  filter.port = o.port;
  for (auto [flag, text, into] :
       {std::tuple{"--since", &o.since, &filter.since}, {"--until", &o.until, &filter.until}}) {
    if (text->empty()) continue;
    *into = parseTime(*text);
    if (!*into) {
      err << fmt::format("vpcfw flowlogs show: {} {} is not Unix seconds nor YYYY-MM-DDTHH:MM[:SS]Z\n", flag,
                         quoteForMessage(*text));
      return kExitUsage;
    }
  }
  std::size_t shown = 0;
  auto table = std::make_unique<Table>(out);
  auto stats = flowlog::readFlowLogs(o.path, flowlog::ReadLimits{}, [&](const flowlog::RowView& row) {
    if (!filter.matches(row)) return;
    ++shown;
    if (!o.json) {
      table->add(row);
      return;
    }
    // In the file's field order, as the columns are.
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    const auto& fields = row.format.fields();
    for (std::size_t i = 0; i < fields.size(); ++i) {
      const std::string name(flowlog::fieldInfo(fields[i]).name);
      const std::string_view v = row.values[i];
      if (v == "-")
        j[name] = nullptr;
      else if (auto n = numeric(fields[i]) ? number(v) : std::nullopt)
        j[name] = *n;
      else
        j[name] = std::string(v);
    }
    out << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
  });
  table.reset();
  if (!stats) {
    err << "vpcfw flowlogs show: " << escapeForMessage(stats.error().message) << '\n';
    return kExitUsage;
  }
  for (const auto& p : stats->problems) err << p.text() << '\n';
  if (stats->problemCount > stats->problems.size())
    err << fmt::format("... and {} more problems\n", stats->problemCount - stats->problems.size());
  if (stats->problemCount > 0) {
    err << fmt::format(
        "vpcfw flowlogs show: {} records shown of {} read from {} files; {} files and {} lines skipped\n", shown,
        stats->rows, stats->files, stats->skippedFiles, stats->skippedLines);
    return kExitBlocked;
  }
  return kExitOk;
}

}  // namespace

void addFlowLogCommands(CLI::App& app, Runner& selected) {
  auto* flowlogs = app.add_subcommand("flowlogs", "Read flow-log files back");
  flowlogs->require_subcommand(1);
  auto o = std::make_shared<ShowOptions>();
  auto* show = flowlogs->add_subcommand(
      "show",
      "Print the records of an S3-layout tree, a .log.gz file or stream files, filtered (exit 1: some skipped)");
  show->add_option("path", o->path, "A directory (read recursively), a .log.gz or a .log file")->required();
  show->add_option("--eni", o->eni, "Only this interface-id (eni-...)");
  show->add_option("--action", o->action, "Only ACCEPT or REJECT")->check(CLI::IsMember({"ACCEPT", "REJECT"}));
  show->add_option("--addr", o->addr, "Only records with this address (srcaddr, dstaddr, pkt-srcaddr, pkt-dstaddr)");
  show->add_option("--port", o->port, "Only records with this source or destination port")->check(CLI::Range(0, 65535));
  show->add_option("--since", o->since, "Only records ending at or after T (Unix seconds or YYYY-MM-DDTHH:MM[:SS]Z)");
  show->add_option("--until", o->until, "Only records starting at or before T");
  show->add_flag("--json", o->json, "One JSON object per record (\"-\" is null, numbers are numbers)");
  show->callback(
      [&selected, o] { selected = [o](std::ostream& out, std::ostream& err) { return showCommand(*o, out, err); }; });
}

}  // namespace vpcfw::cli
