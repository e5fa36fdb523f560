// Owning wrappers for libnftnl objects and the IR -> libnftnl linearization
// (nft's own encodings, netlink-notes.md §3, so `nft list` reads our tables).
#pragma once

#include <netinet/in.h>  // before linux/netfilter.h (netlink-notes.md §7)

#include <cstdio>  // libnftnl headers use FILE

#include <libnftnl/chain.h>
#include <libnftnl/flowtable.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "vpcfw/compile/ir.h"

namespace vpcfw::nft {

struct TableDeleter {
  void operator()(nftnl_table* t) const { nftnl_table_free(t); }
};
struct ChainDeleter {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct SetDeleter {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
struct RuleDeleter {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
struct ObjDeleter {
  void operator()(nftnl_obj* o) const { nftnl_obj_free(o); }
};
struct FlowtableDeleter {
  void operator()(nftnl_flowtable* f) const { nftnl_flowtable_free(f); }
};
using TablePtr = std::unique_ptr<nftnl_table, TableDeleter>;
using ObjPtr = std::unique_ptr<nftnl_obj, ObjDeleter>;
using FlowtablePtr = std::unique_ptr<nftnl_flowtable, FlowtableDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, SetDeleter>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDeleter>;

// One set element as bytes, the form both the desired state and a kernel
// dump are reduced to for comparison.
// Everything an element can carry is compared: vpcfw's own elements have
// only key, key end, flags and verdict, so anything else on a kernel element
// (data, a timeout, userdata, expressions, an object reference) is a difference.
struct ElementBytes {
  std::string key, keyEnd;  // keyEnd: concatenated interval sets only
  std::uint32_t flags = 0;  // NFT_SET_ELEM_INTERVAL_END for rbtree interval ends
  int verdict = 0;
  std::string chain;
  bool hasVerdict = false;
  std::string data;  // map data other than verdicts
  std::uint64_t timeout = 0;
  std::string userdata, expressions, objref;
  auto operator<=>(const ElementBytes&) const = default;
};

// An element as one string: every field of ElementBytes, length-prefixed
// where it varies, so that equal packings are equal elements. The form the
// kernel's side of a diff (a read-back, the daemon's record) keeps: a third
// of ElementBytes' memory. Sorted packings compare as sets do.
using PackedElement = std::string;
PackedElement pack(const ElementBytes& e);
ElementBytes unpack(std::string_view p);

// A set's elements, packed, sorted and laid end to end in one buffer (no
// allocation per element).
class PackedElements {
 public:
  PackedElements() = default;
  explicit PackedElements(std::vector<PackedElement> elements);
  std::size_t size() const { return ends_.size(); }
  std::string_view operator[](std::size_t i) const {
    const std::uint32_t from = i ? ends_[i - 1] : 0;
    return {buf_.data() + from, ends_[i] - from};
  }
  bool operator==(const PackedElements&) const = default;

 private:
  std::string buf_;
  std::vector<std::uint32_t> ends_;
};
PackedElements packAll(const std::vector<ElementBytes>& elements);
// The elements of `a` that `b` lacks.
std::vector<ElementBytes> missingFrom(const PackedElements& a, const PackedElements& b);

struct LinearSet {
  SetPtr set;                          // without elements
  std::vector<ElementBytes> elements;  // sorted
  std::string signature;               // everything but elements, for comparison
  std::uint32_t flags = 0;             // NFT_SET_*
  // A dynamic set (NFT_SET_EVAL): its elements are packet state, added by
  // rules, so they are not compared one by one; instead every element the
  // kernel holds must be exactly this (no verdict, data, timeout or
  // userdata; these expressions), whatever its key. Another element (a
  // forged cap, say) is a difference.
  std::string dynamicExpressions;
};
// Whether `have` (a kernel set's elements) is what `s` wants.
bool elementsMatch(const LinearSet& s, const PackedElements& have);

// A stateful object vpcfw creates (ct timeouts) and its signature, which a
// read-back of any object is reduced to as well.
struct LinearObject {
  ObjPtr obj;
  std::string name;
  std::uint32_t type = 0;  // NFT_OBJECT_*
  std::string signature;
};
std::string objectSignature(nftnl_obj* o);

struct LinearRule {
  RulePtr rule;
  std::string signature;  // expressions + comment, for comparison
  std::string comment;
};

struct LinearChain {
  ChainPtr chain;
  std::string signature;  // hook, priority, policy
  std::vector<LinearRule> rules;
};

struct LinearTable {
  std::string name;
  std::string signature;  // the table's own attributes (flags, the ownership marker)
  std::vector<LinearObject> objects;
  std::vector<LinearSet> sets;
  std::vector<LinearChain> chains;
  std::uint32_t cacheGeneration = 0;            // the NACL verdict cache's, in the rules
  std::unordered_set<std::string> cacheChains;  // chains with cache hit rules (linearized ones)
};

// The names a partial linearization keeps (RulesetChanges' sets and chains).
struct LinearizeOnly {
  std::unordered_set<std::string> sets, chains;
};
// The whole table, or (only != nullptr) the table's signature and just the
// sets and chains `only` names; the NACL verdict cache's rules with
// generation `cacheGeneration` (compile/ir.h, VerdictCache).
LinearTable linearize(const compile::Table& t, const LinearizeOnly* only = nullptr, std::uint32_t cacheGeneration = 0);

// The table by name only (for DELTABLE and a create-if-missing NEWTABLE).
TablePtr makeTable(const std::string& name);
// The table as vpcfw makes it: flags 0 and the ownership marker in its userdata.
TablePtr makeOwnedTable(const std::string& name);
// True when the table's userdata carries vpcfw's ownership marker.
bool hasOwnerMarker(nftnl_table* t);
// Adds the elements to `s` (a copy of the set header with only table/name/id).
// keysOnly: just what identifies an element (for DELSETELEM).
void addElements(nftnl_set* s, const std::vector<ElementBytes>& elements, bool keysOnly = false);

// Canonical text of a rule's expressions and userdata; of a set's header; of a
// chain's hook. The same function runs on desired and dumped objects.
std::string tableSignature(nftnl_table* t);
std::string ruleSignature(nftnl_rule* r);
std::string setSignature(nftnl_set* s);
std::string chainSignature(nftnl_chain* c);
ElementBytes elementBytes(nftnl_set_elem* e);
std::string ruleComment(nftnl_rule* r);

}  // namespace vpcfw::nft
