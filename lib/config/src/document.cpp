// The compact YAML document (document.h): one pass over yaml-cpp's events
// both checks the shape (one document, nesting, alias expansion) and records
// the nodes.
#include "document.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <span>
#include <spanstream>

#include "vpcfw/config/loader.h"

namespace vpcfw::config {

bool Node::IsNull() const { return doc_ && doc_->nodes_[id_].kind == Document::Kind::kNull; }
bool Node::IsScalar() const { return doc_ && doc_->nodes_[id_].kind == Document::Kind::kScalar; }
bool Node::IsSequence() const { return doc_ && doc_->nodes_[id_].kind == Document::Kind::kSequence; }
bool Node::IsMap() const { return doc_ && doc_->nodes_[id_].kind == Document::Kind::kMap; }
int Node::line() const { return doc_ ? static_cast<int>(doc_->nodes_[id_].line) : -1; }
int Node::column() const { return doc_ ? static_cast<int>(doc_->nodes_[id_].column) : -1; }

std::string_view Node::Scalar() const {
  if (!IsScalar()) return {};
  const auto& r = doc_->nodes_[id_];
  return std::string_view(doc_->text_).substr(r.first, r.count);
}

Node Node::operator[](std::string_view key) const {
  if (!IsMap()) return {};
  const auto& r = doc_->nodes_[id_];
  for (std::size_t i = 0; i < r.count; ++i) {
    Node k(doc_, doc_->children_[r.first + 2 * i]);
    if (k.IsScalar() && k.Scalar() == key) return Node(doc_, doc_->children_[r.first + 2 * i + 1]);
  }
  return {};
}

Node::Iterator Node::begin() const {
  if (!IsSequence()) return Iterator(doc_, nullptr);
  return Iterator(doc_, doc_->children_.data() + doc_->nodes_[id_].first);
}
Node::Iterator Node::end() const {
  if (!IsSequence()) return Iterator(doc_, nullptr);
  const auto& r = doc_->nodes_[id_];
  return Iterator(doc_, doc_->children_.data() + r.first + r.count);
}

std::vector<NodePair> Node::pairs() const {
  std::vector<NodePair> out;
  if (!IsMap()) return out;
  const auto& r = doc_->nodes_[id_];
  out.reserve(r.count);
  for (std::size_t i = 0; i < r.count; ++i)
    out.push_back(
        NodePair{Node(doc_, doc_->children_[r.first + 2 * i]), Node(doc_, doc_->children_[r.first + 2 * i + 1])});
  return out;
}

namespace {

// Reads the YAML event stream before any node is built: one document, nesting
// at most kMaxNesting deep, aliases expanding it to at most `budget` (one per
// node plus the bytes of each scalar, an alias counting as what it stands
// for). The parser shares an aliased node instead of copying it, but the
// loader walks every use, so a "billion laughs" file would cost exponential
// time there; measured here it costs one pass over the events.
class ShapeCheck final : public YAML::EventHandler {
 public:
  explicit ShapeCheck(std::uint64_t budget) : budget_(budget) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1)
      throw ShapeError{mark, "a second YAML document: a config file holds exactly one",
                       "remove this '---' line (and the documents after it) or split the file"};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, 1); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    leaf(mark, anchor, 1 + value.size());
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (anchor >= sizes_.size() || sizes_[anchor] == kOpen)
      throw ShapeError{mark, "an alias inside the node it refers to (a cycle)", {}};
    add(mark, sizes_[anchor]);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  static constexpr std::uint64_t kOpen = ~std::uint64_t{0};
  struct Frame {
    YAML::anchor_t anchor;
    std::uint64_t startTotal;
  };

  // total_ never exceeds budget_, so sizes are exact and nothing overflows.
  void add(const YAML::Mark& mark, std::uint64_t size) {
    if (size > budget_ - total_)
      throw ShapeError{mark, fmt::format("aliases expand the config beyond {} nodes and bytes", budget_),
                       fmt::format("aliases may expand a config to {} times its size (at least {}); write the "
                                   "repeated parts out",
                                   kExpansionFactor, kMinExpansion)};
    total_ += size;
  }
  void anchorSize(YAML::anchor_t anchor, std::uint64_t size) {
    if (anchor == YAML::NullAnchor) return;
    if (sizes_.size() <= anchor) sizes_.resize(anchor + 1, 0);
    sizes_[anchor] = size;
  }
  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, std::uint64_t size) {
    add(mark, size);
    anchorSize(anchor, size);
  }
  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (stack_.size() >= static_cast<std::size_t>(kMaxNesting))
      throw ShapeError{mark, fmt::format("lists and mappings nested more than {} deep", kMaxNesting), {}};
    stack_.push_back(Frame{anchor, total_});
    add(mark, 1);
    anchorSize(anchor, kOpen);
  }
  void close() {
    Frame f = stack_.back();
    stack_.pop_back();
    anchorSize(f.anchor, total_ - f.startTotal);
  }

  std::uint64_t budget_;
  std::uint64_t total_ = 0;
  int documents_ = 0;
  std::vector<Frame> stack_;
  std::vector<std::uint64_t> sizes_;  // by anchor id (yaml-cpp numbers them from 1)
};

}  // namespace

// Records the nodes as the events arrive; the shape check sees each event
// first, so nothing is recorded beyond what it allows.
class DocumentBuilder final : public YAML::EventHandler {
 public:
  // Reserved from the text's size (a node per 8 bytes is about what configs
  // hold), so that the vectors are not copied over and over as they grow.
  DocumentBuilder(std::uint64_t budget, std::size_t bytes) : shape_(budget) {
    doc_.nodes_.reserve(bytes / 8);
    doc_.children_.reserve(bytes / 8);
    doc_.text_.reserve(bytes / 2);
  }
  Document take() { return std::move(doc_); }

  void OnDocumentStart(const YAML::Mark& mark) override { shape_.OnDocumentStart(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    shape_.OnNull(mark, anchor);
    complete(record(Document::Kind::kNull, mark), anchor);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    shape_.OnScalar(mark, tag, anchor, value);
    std::uint32_t id = record(Document::Kind::kScalar, mark);
    auto& r = doc_.nodes_[id];
    r.first = doc_.text_.size();
    r.count = static_cast<std::uint32_t>(value.size());
    doc_.text_ += value;
    complete(id, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    shape_.OnAlias(mark, anchor);
    if (anchor >= anchors_.size()) throw ShapeError{mark, "an alias to an anchor that is not defined", {}};
    pending_.push_back(anchors_[anchor]);
    if (open_.empty()) doc_.root_ = anchors_[anchor];
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value style) override {
    shape_.OnSequenceStart(mark, tag, anchor, style);
    start(Document::Kind::kSequence, mark, anchor);
  }
  void OnSequenceEnd() override {
    shape_.OnSequenceEnd();
    finish(1);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value style) override {
    shape_.OnMapStart(mark, tag, anchor, style);
    start(Document::Kind::kMap, mark, anchor);
  }
  void OnMapEnd() override {
    shape_.OnMapEnd();
    finish(2);
  }

 private:
  struct Open {
    std::uint32_t id;
    YAML::anchor_t anchor;
    std::size_t firstPending;
  };

  std::uint32_t record(Document::Kind kind, const YAML::Mark& mark) {
    Document::Record r;
    r.kind = kind;
    r.line = static_cast<std::uint32_t>(mark.line);
    r.column = static_cast<std::uint32_t>(mark.column);
    doc_.nodes_.push_back(r);
    return static_cast<std::uint32_t>(doc_.nodes_.size() - 1);
  }
  void setAnchor(YAML::anchor_t anchor, std::uint32_t id) {
    if (anchor == YAML::NullAnchor) return;
    if (anchors_.size() <= anchor) anchors_.resize(anchor + 1, 0);
    anchors_[anchor] = id;
  }
  void complete(std::uint32_t id, YAML::anchor_t anchor) {
    setAnchor(anchor, id);
    pending_.push_back(id);
    if (open_.empty()) doc_.root_ = id;
  }
  void start(Document::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    std::uint32_t id = record(kind, mark);
    open_.push_back(Open{id, anchor, pending_.size()});
  }
  // Moves the open collection's children from the scratch list into the
  // document, contiguous, so that a node's children are one slice.
  void finish(std::size_t perItem) {
    Open o = open_.back();
    open_.pop_back();
    auto& r = doc_.nodes_[o.id];
    r.first = doc_.children_.size();
    r.count = static_cast<std::uint32_t>((pending_.size() - o.firstPending) / perItem);
    doc_.children_.insert(doc_.children_.end(), pending_.begin() + static_cast<std::ptrdiff_t>(o.firstPending),
                          pending_.end());
    pending_.resize(o.firstPending);
    complete(o.id, o.anchor);
  }

  ShapeCheck shape_;
  Document doc_;
  std::vector<Open> open_;
  std::vector<std::uint32_t> pending_;
  std::vector<std::uint32_t> anchors_;
};

Document parseDocument(std::string_view yaml, std::uint64_t budget) {
  std::ispanstream in{std::span<const char>(yaml.data(), yaml.size())};
  YAML::Parser parser(in);
  DocumentBuilder builder(budget, yaml.size());
  while (parser.HandleNextDocument(builder)) {
  }
  return builder.take();
}

}  // namespace vpcfw::config
