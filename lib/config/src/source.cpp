// Config sources: the file list of a file or directory config, the per-file
// cache that lets a reload parse only what changed, and the merge of the
// files' fragments into one model (source.h).
#include "vpcfw/config/source.h"

#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "read_file.h"
#include "vpcfw/model/validate.h"

namespace vpcfw::config {
namespace {

// More files than this in conf.d is an error, not a long wait.
constexpr std::size_t kMaxConfigFiles = 4096;
// A group's stamp: its fragment's generation, then its place in the fragment
// plus one (the groups past the last place that fits get no stamp).
constexpr int kGroupBits = 24;
constexpr std::size_t kMaxStampedGroups = (std::size_t{1} << kGroupBits) - 1;

std::string joinPath(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

// conf.d takes "*.yaml" that are not hidden: editors' temporaries
// (".x.yaml.swp", "x.yaml~", "#x.yaml#") and dot files are not config.
bool isConfigName(std::string_view name) {
  constexpr std::string_view kExt = ".yaml";
  return name.size() > kExt.size() && name.front() != '.' && name.ends_with(kExt);
}

std::string where(const SourceLocation& l) {
  return fmt::format("{}:{}:{}", escapeForMessage(l.file), l.line, l.column);
}

struct Closedir {
  DIR* d;
  ~Closedir() {
    if (d) ::closedir(d);
  }
};

// The identity of what merge calls one object: its kind's name space. The
// first definition of a name is remembered by its index in `into` (the
// fragment's object may have been moved from).
// `kept`, when given, gets the index in `from` of each object kept.
template <class T, class Key, class From>
void mergeList(std::vector<T>& into, From& from, std::size_t fragment,
               std::map<Key, std::pair<std::size_t, std::size_t>>& seen, std::function<Key(const T&)> key,
               std::function<std::string(const T&)> what, Diagnostics& diags,
               std::vector<std::size_t>* kept = nullptr) {
  for (std::size_t k = 0; k < from.size(); ++k) {
    auto& x = from[k];
    if (!x.name.empty()) {
      auto [pos, fresh] = seen.emplace(key(x), std::pair{fragment, into.size()});
      if (!fresh && pos->second.first != fragment) {
        diags.error(x.origin.of("name"), fmt::format("{} is already defined in another file", what(x)),
                    fmt::format("first defined at {}", where(into[pos->second.second].origin.of("name"))));
        continue;
      }
    }
    if (kept) kept->push_back(k);
    if constexpr (std::is_const_v<From>)
      into.push_back(x);
    else
      into.push_back(std::move(x));
  }
}

// mergeFragments, copying from the fragments or (`Fragment` not const)
// moving out of them.
// `stamps`, when given, gets a stamp per merged group: generations[i] (of
// fragment i) and the group's place in it.
template <class Fragment>
model::Model merge(const std::vector<Fragment*>& fragments, Diagnostics& diags,
                   const std::vector<std::uint64_t>* generations = nullptr,
                   std::vector<std::uint64_t>* stamps = nullptr) {
  model::Model m;
  using Name = std::string;
  using Scoped = std::pair<std::string, std::string>;  // VPC, name
  using Seen = std::pair<std::size_t, std::size_t>;    // fragment, index in the merged list
  std::map<Name, Seen> vpcs, subnets, instances, prefixLists, gateways, peerings;
  std::map<Scoped, Seen> nacls, groups, routeTables;
  auto byName = [](const auto& x) { return x.name; };
  auto scoped = [](const auto& x) { return Scoped{x.vpcName, x.name}; };
  auto simple = [](std::string_view kind) {
    return [kind](const auto& x) { return fmt::format("{} '{}'", kind, x.name); };
  };
  auto inVpc = [](std::string_view kind) {
    return [kind](const auto& x) { return fmt::format("{} '{}' of VPC {}", kind, x.name, quoteForMessage(x.vpcName)); };
  };
  // Reserved, so that objects are copied or moved once.
  auto total = [&](auto member) {
    std::size_t n = 0;
    for (const auto* f : fragments) n += (f->*member).size();
    return n;
  };
  using model::Model;
  m.vpcs.reserve(total(&Model::vpcs));
  m.subnets.reserve(total(&Model::subnets));
  m.instances.reserve(total(&Model::instances));
  m.prefixLists.reserve(total(&Model::prefixLists));
  m.internetGateways.reserve(total(&Model::internetGateways));
  m.peerings.reserve(total(&Model::peerings));
  m.nacls.reserve(total(&Model::nacls));
  m.groups.reserve(total(&Model::groups));
  m.routeTables.reserve(total(&Model::routeTables));
  bool limitsSet = false;
  std::map<Name, Seen> flowLogs;
  m.flowLogs.reserve(total(&Model::flowLogs));
  bool regionSet = false;
  for (std::size_t i = 0; i < fragments.size(); ++i) {
    Fragment& f = *fragments[i];
    if (f.limits.origin.line() != 0) {
      if (limitsSet)
        diags.error(f.limits.origin.at(), "limits are already set in another file",
                    fmt::format("first set at {}; set them in one file", where(m.limits.origin.at())));
      else {
        m.limits = f.limits;
        limitsSet = true;
      }
    }
    using namespace model;
    mergeList<Vpc, Name>(m.vpcs, f.vpcs, i, vpcs, byName, simple("VPC"), diags);
    mergeList<Subnet, Name>(m.subnets, f.subnets, i, subnets, byName, simple("subnet"), diags);
    mergeList<Instance, Name>(m.instances, f.instances, i, instances, byName, simple("instance"), diags);
    mergeList<PrefixList, Name>(m.prefixLists, f.prefixLists, i, prefixLists, byName, simple("prefix list"), diags);
    mergeList<InternetGateway, Name>(m.internetGateways, f.internetGateways, i, gateways, byName,
                                     simple("internet gateway"), diags);
    mergeList<Peering, Name>(m.peerings, f.peerings, i, peerings, byName, simple("peering"), diags);
    mergeList<NetworkAcl, Scoped>(m.nacls, f.nacls, i, nacls, scoped, inVpc("network ACL"), diags);
    std::vector<std::size_t> kept;
    mergeList<SecurityGroup, Scoped>(m.groups, f.groups, i, groups, scoped, inVpc("security group"), diags, &kept);
    if (stamps)
      for (auto k : kept) stamps->push_back(k < kMaxStampedGroups ? (*generations)[i] << kGroupBits | (k + 1) : 0);
    mergeList<RouteTable, Scoped>(m.routeTables, f.routeTables, i, routeTables, scoped, inVpc("route table"), diags);
    mergeList<FlowLog, Name>(m.flowLogs, f.flowLogs, i, flowLogs, byName, simple("flow log"), diags);
    if (f.regionOrigin.line() != 0) {
      if (regionSet)
        diags.error(f.regionOrigin.at(), "the region is already set in another file",
                    fmt::format("first set at {}; set it in one file", where(m.regionOrigin.at())));
      else {
        m.region = f.region;
        m.regionOrigin = f.regionOrigin;
        regionSet = true;
      }
    }
  }
  return m;
}

}  // namespace

model::Model mergeFragments(const std::vector<const model::Model*>& fragments, Diagnostics& diags) {
  return merge(fragments, diags);
}

ConfigSource ConfigSource::open(std::string path, LoadOptions options, bool cache) {
  return ConfigSource(std::move(path), std::move(options), cache);
}

bool ConfigSource::listFiles(Diagnostics& diags) {
  files_.clear();
  directories_.clear();
  auto fail = [&](const std::string& at, std::string message) {
    diags.error(SourceLocation{at, 0, 0}, std::move(message));
    return false;
  };
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    // A file (or something readRegularFile will refuse with its reason).
    files_.push_back(path_);
    auto slash = path_.rfind('/');
    directories_.push_back(slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash));
    return true;
  }
  directories_.push_back(path_);
  const std::string main = joinPath(path_, "vpcfw.yaml");
  struct stat ml {};
  if (::lstat(main.c_str(), &ml) == 0)
    files_.push_back(main);  // whatever it is: reading it says what is wrong
  else if (errno != ENOENT)
    return fail(main, fmt::format("cannot open config file: {}", std::strerror(errno)));
  const std::string confd = joinPath(path_, "conf.d");
  struct stat cs {};
  if (::stat(confd.c_str(), &cs) == 0) {
    if (!S_ISDIR(cs.st_mode)) return fail(confd, "conf.d is not a directory");
    directories_.push_back(confd);
    Closedir d{::opendir(confd.c_str())};
    if (!d.d) return fail(confd, fmt::format("cannot read config directory: {}", std::strerror(errno)));
    std::vector<std::string> names;
    errno = 0;
    while (dirent* e = ::readdir(d.d)) {
      if (!isConfigName(e->d_name)) continue;
      if (names.size() >= kMaxConfigFiles)
        return fail(confd, fmt::format("more than {} config files in conf.d", kMaxConfigFiles));
      names.emplace_back(e->d_name);
    }
    if (errno != 0) return fail(confd, fmt::format("cannot read config directory: {}", std::strerror(errno)));
    std::sort(names.begin(), names.end());
    for (const auto& n : names) files_.push_back(joinPath(confd, n));
  } else if (errno != ENOENT) {
    return fail(confd, fmt::format("cannot read config directory: {}", std::strerror(errno)));
  }
  if (files_.empty()) return fail(path_, "the config directory holds no vpcfw.yaml and no conf.d/*.yaml file");
  return true;
}

std::optional<model::Model> ConfigSource::load(Diagnostics& diags) {
  filesParsed_ = 0;
  const std::size_t errorsBefore = diags.errorCount();
  if (!listFiles(diags)) return std::nullopt;
  std::map<std::string, Fragment> next;  // the files of this load only: removed files leave the cache
  bool ok = true;
  std::uint64_t total = 0;
  for (const auto& file : files_) {
    struct stat st {};
    auto text = readRegularFile(file, options_, diags, st);
    if (!text) {
      ok = false;
      continue;
    }
    total += text->size();
    if (total > options_.maxBytes) {
      diags.error(SourceLocation{file, 0, 0},
                  fmt::format("the config files are together larger than the limit of {} bytes", options_.maxBytes),
                  options_.limitHint);
      ok = false;
      break;
    }
    FileIdentity id{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), text->size(),
                    static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                    std::hash<std::string_view>{}(*text)};
    if (auto it = cache_.find(file); it != cache_.end() && it->second.identity == id && it->second.complete) {
      for (const auto& w : it->second.warnings) diags.warning(w.where, w.message, w.hint);
      next.insert(cache_.extract(it));
      continue;
    }
    ++filesParsed_;
    Fragment f;
    f.identity = id;
    f.generation = nextGeneration_++;
    const std::size_t shown = diags.all().size(), dropped = diags.dropped();
    if (!parseConfig(*text, file, f.model, diags)) {
      ok = false;
      continue;
    }
    // A fragment whose warnings were not all shown (the cap) could not be
    // replayed as a fresh load shows them: parsed anew next time.
    f.complete = diags.dropped() == dropped;
    f.warnings.assign(diags.all().begin() + static_cast<std::ptrdiff_t>(shown), diags.all().end());
    next.insert_or_assign(file, std::move(f));
  }
  cache_ = std::move(next);
  if (!ok) return std::nullopt;
  // A one-shot load moves the fragments into the model; a cached one copies
  // them (origins and rules allocate nothing to copy).
  model::Model merged;
  std::vector<std::uint64_t> stamps;
  if (caching_) {
    std::vector<const model::Model*> fragments;
    std::vector<std::uint64_t> generations;
    for (const auto& file : files_) {
      fragments.push_back(&cache_.at(file).model);
      generations.push_back(cache_.at(file).generation);
    }
    merged = merge(fragments, diags, &generations, &stamps);
  } else {
    std::vector<model::Model*> fragments;
    for (const auto& file : files_) fragments.push_back(&cache_.at(file).model);
    merged = merge(fragments, diags);
    cache_.clear();
  }
  merged.sourceFile = path_;
  if (diags.errorCount() != errorsBefore) return std::nullopt;
  // A cached source checks again only the rules of the groups whose inputs
  // changed (model::GroupRuleMemo).
  if (!(caching_ ? model::validate(merged, diags, stamps, memo_) : model::validate(merged, diags))) return std::nullopt;
  return merged;
}

}  // namespace vpcfw::config
