// Inside the config module: a compact read-only YAML document built from
// yaml-cpp's event stream (YAML::Parser + EventHandler) instead of YAML::Node
// trees, which cost about 30 times the file's size in memory and most of the
// load time. Nodes are 24-byte records in one vector, scalars live in one
// string, and an alias shares the node of its anchor (the shape check bounds
// what that may expand to). Node offers the subset of YAML::Node's reading
// API the loader uses, with the same answers, so diagnostics stay the same.
#pragma once

#include <yaml-cpp/mark.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vpcfw::config {

class Document;
struct NodePair;

// A handle on one node of a Document, or on no node ("undefined", what
// YAML::Node gives for a missing key).
class Node {
 public:
  Node() = default;
  Node(const Document* doc, std::uint32_t id) : doc_(doc), id_(id) {}

  bool IsDefined() const { return doc_ != nullptr; }
  bool IsNull() const;
  bool IsScalar() const;
  bool IsSequence() const;
  bool IsMap() const;
  std::string_view Scalar() const;  // empty unless a scalar
  int line() const;                 // 0-based, like YAML::Mark; -1 when undefined
  int column() const;

  // The value of the first key equal to `key` (a scalar), or undefined; on
  // anything but a mapping, undefined.
  Node operator[](std::string_view key) const;

  // A sequence's items (nothing for anything else).
  class Iterator {
   public:
    Iterator(const Document* doc, const std::uint32_t* p) : doc_(doc), p_(p) {}
    Node operator*() const { return Node(doc_, *p_); }
    Iterator& operator++() {
      ++p_;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return p_ != o.p_; }

   private:
    const Document* doc_;
    const std::uint32_t* p_;
  };
  Iterator begin() const;
  Iterator end() const;

  // A mapping's pairs in file order (nothing for anything else).
  std::vector<struct NodePair> pairs() const;

 private:
  const Document* doc_ = nullptr;
  std::uint32_t id_ = 0;
};

struct NodePair {
  Node first, second;
};

// Thrown out of parseDocument: the first problem the shape check found.
struct ShapeError {
  YAML::Mark mark;
  std::string message;
  std::string hint;
};

class Document {
 public:
  enum class Kind : std::uint8_t { kNull, kScalar, kSequence, kMap };
  struct Record {
    Kind kind = Kind::kNull;
    std::uint32_t line = 0, column = 0;  // 0-based
    std::uint32_t count = 0;             // scalar bytes, sequence items, map pairs
    std::size_t first = 0;               // scalar: offset in text_; collection: index in children_
  };

  // The root node; undefined for an empty document.
  Node root() const { return root_ ? Node(this, *root_) : Node(); }

 private:
  friend class Node;
  friend class DocumentBuilder;
  std::vector<Record> nodes_;
  std::vector<std::uint32_t> children_;  // a map's pairs as key, value, key, value...
  std::string text_;
  std::optional<std::uint32_t> root_;
};

// Parses `yaml` into a Document in one pass over yaml-cpp's events, with the
// shape check (one document, nesting at most kMaxNesting, aliases expanding
// to at most `budget`). Throws ShapeError or YAML::Exception; the loader turns
// both into diagnostics.
Document parseDocument(std::string_view yaml, std::uint64_t budget);

}  // namespace vpcfw::config
