// The model's small helpers: names of enums, look-ups by name, origins,
// what a flow log covers.
#include "vpcfw/model/model.h"

#include <algorithm>

namespace vpcfw::model {

const Origin::Field* Origin::find(FieldName field) const {
  const std::size_t n = std::min<std::size_t>(count_, kInline);
  for (std::size_t i = 0; i < n; ++i)
    if (inline_[i].name == field.id()) return &inline_[i];
  for (const auto& f : more_)
    if (f.name == field.id()) return &f;
  return nullptr;
}

SourceLocation Origin::of(FieldName field) const {
  const Field* f = find(field);
  if (!f) return at();
  return SourceLocation{file_ ? *file_ : std::string(), static_cast<int>(f->line), static_cast<int>(f->column)};
}

void Origin::set(FieldName field, int line, int column) {
  const Field f{field.id(), static_cast<std::uint32_t>(line), static_cast<std::uint32_t>(column)};
  if (count_ < kInline)
    inline_[count_] = f;
  else
    more_.push_back(f);
  ++count_;
}

bool Origin::operator==(const Origin& o) const {
  const bool sameFile = file_ == o.file_ || (file_ && o.file_ && *file_ == *o.file_) ||
                        ((!file_ || file_->empty()) && (!o.file_ || o.file_->empty()));
  const std::size_t n = std::min<std::size_t>(count_, kInline);
  return sameFile && line_ == o.line_ && column_ == o.column_ && count_ == o.count_ &&
         std::equal(inline_.begin(), inline_.begin() + static_cast<std::ptrdiff_t>(n), o.inline_.begin()) &&
         more_ == o.more_;
}

std::string_view directionName(Direction d) { return d == Direction::kIngress ? "ingress" : "egress"; }
std::string_view actionName(Action a) { return a == Action::kAllow ? "allow" : "deny"; }

std::optional<Direction> parseDirection(std::string_view text) {
  for (auto d : {Direction::kIngress, Direction::kEgress})
    if (directionName(d) == text) return d;
  return std::nullopt;
}

std::optional<Action> parseAction(std::string_view text) {
  for (auto a : {Action::kAllow, Action::kDeny})
    if (actionName(a) == text) return a;
  return std::nullopt;
}

std::string NaclRule::label() const { return isImplicitDeny() ? "*" : std::to_string(number); }

std::string SgRule::peerText() const {
  if (auto* c = std::get_if<net::Cidr>(&peer)) return c->toString();
  if (auto* g = std::get_if<GroupRef>(&peer)) return "group " + g->name;
  return "prefix list " + std::get<PrefixListRef>(peer).name;
}

std::string Route::targetText() const {
  switch (target) {
    case Target::kLocal:
      return "local";
    case Target::kInternetGateway:
      return "internet gateway " + targetName;
    case Target::kPeering:
      return "peering " + targetName;
  }
  return "?";
}

bool Vpc::contains(const net::IpAddress& a) const {
  for (const auto& c : cidrs)
    if (c.contains(a)) return true;
  return ipv6Cidr && ipv6Cidr->contains(a);
}

bool Instance::owns(const net::IpAddress& a) const {
  if (a == privateIp) return true;
  for (const auto& s : secondaryIps)
    if (s == a) return true;
  for (const auto& s : ipv6Addresses)
    if (s == a) return true;
  return false;
}

namespace {
template <class V>
std::size_t findByName(const V& items, std::string_view name) {
  for (std::size_t i = 0; i < items.size(); ++i)
    if (items[i].name == name) return i;
  return kNone;
}
template <class V>
std::size_t findInVpc(const V& items, std::string_view name, std::size_t vpc) {
  for (std::size_t i = 0; i < items.size(); ++i)
    if (items[i].name == name && items[i].vpc == vpc) return i;
  return kNone;
}
}  // namespace

std::size_t Model::findVpc(std::string_view name) const { return findByName(vpcs, name); }
std::size_t Model::findSubnet(std::string_view name) const { return findByName(subnets, name); }
std::size_t Model::findInstance(std::string_view name) const { return findByName(instances, name); }
std::size_t Model::findPrefixList(std::string_view name) const { return findByName(prefixLists, name); }
std::size_t Model::findNacl(std::string_view name, std::size_t vpc) const { return findInVpc(nacls, name, vpc); }
std::size_t Model::findRouteTable(std::string_view name, std::size_t vpc) const {
  return findInVpc(routeTables, name, vpc);
}

std::size_t Model::findGroup(std::string_view ref, std::size_t vpc) const {
  auto slash = ref.find('/');
  if (slash != std::string_view::npos) {
    std::size_t v = findVpc(ref.substr(0, slash));
    if (v == kNone) return kNone;
    return findInVpc(groups, ref.substr(slash + 1), v);
  }
  return findInVpc(groups, ref, vpc);
}

std::size_t Model::instanceWithAddress(const net::IpAddress& a) const {
  for (std::size_t i = 0; i < instances.size(); ++i)
    if (instances[i].owns(a)) return i;
  return kNone;
}

std::size_t Model::instanceWithPublicIp(const net::IpAddress& a) const {
  for (std::size_t i = 0; i < instances.size(); ++i)
    if (instances[i].publicIp && *instances[i].publicIp == a) return i;
  return kNone;
}

std::size_t Model::vpcContaining(const net::IpAddress& a) const {
  for (std::size_t i = 0; i < vpcs.size(); ++i)
    if (vpcs[i].contains(a)) return i;
  return kNone;
}

std::size_t Model::activePeering(std::size_t a, std::size_t b) const {
  for (std::size_t i = 0; i < peerings.size(); ++i)
    if (peerings[i].active && peerings[i].connects(a, b)) return i;
  return kNone;
}

std::vector<std::size_t> flowLogInstances(const Model& m, const FlowLog& log) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& inst = m.instances[i];
    // An instance outside every subnet (not enforced) has no ENI to log.
    if (inst.subnet >= m.subnets.size() || inst.vpc >= m.vpcs.size()) continue;
    bool covered = false;
    switch (log.resourceKind) {
      case FlowLog::Resource::kVpc:
        covered = inst.vpc == log.resource;
        break;
      case FlowLog::Resource::kSubnet:
        covered = inst.subnet == log.resource;
        break;
      case FlowLog::Resource::kInstance:
        covered = i == log.resource;
        break;
    }
    if (covered) out.push_back(i);
  }
  return out;
}

}  // namespace vpcfw::model
