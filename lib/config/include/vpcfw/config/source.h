// A config source: one file, or a directory (DIR/vpcfw.yaml plus
// DIR/conf.d/*.yaml) whose files are parsed one by one and merged into one
// model, validated once. Two files defining the same object is a located
// error naming both places. The source remembers each file it parsed, keyed by
// the file's identity and a hash of its bytes, so that a reload (the daemon's)
// parses only the files that changed. docs/config.md, "Config directories".
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/model/model.h"
#include "vpcfw/model/validate.h"

namespace vpcfw::config {

// What identifies the bytes a file held when it was read: never the mtime
// alone (a same-second edit, a restored backup, a clock step).
struct FileIdentity {
  std::uint64_t device = 0, inode = 0, size = 0;
  std::int64_t mtimeNs = 0;
  std::uint64_t hash = 0;  // of the bytes read
  bool operator==(const FileIdentity&) const = default;
};

class ConfigSource {
 public:
  // A source reading `path` (a file or a directory) with these bounds. Nothing
  // is read until load(): the file list is taken anew by every load, so files
  // added to or removed from conf.d count.
  // `cache` false: a one-shot load (the CLI) that keeps no fragments, so the
  // model is not held twice.
  static ConfigSource open(std::string path, LoadOptions options = {}, bool cache = true);

  // Lists and reads the files, parses the ones not cached, merges and
  // validates. Every problem is a diagnostic; a model only when there were no
  // errors. A directory with no config file in it is an error.
  std::optional<model::Model> load(Diagnostics& diags);

  const std::string& path() const { return path_; }
  // The files the last load read, in merge order.
  const std::vector<std::string>& files() const { return files_; }
  // What to watch for changes (with inotify on directories: editors write a
  // temporary file and rename it into place): a file's directory, or DIR and
  // DIR/conf.d.
  const std::vector<std::string>& directories() const { return directories_; }
  // How many files the last load parsed (the rest came from the cache).
  std::size_t filesParsed() const { return filesParsed_; }

 private:
  struct Fragment {
    FileIdentity identity;
    std::uint64_t generation = 0;  // unique to this parse: stamps its groups for the GroupRuleMemo
    model::Model model;
    std::vector<Diagnostic> warnings;  // replayed when the fragment is reused
    bool complete = true;              // false: some warning was lost to the cap; not reused
  };
  ConfigSource(std::string path, LoadOptions options, bool cache)
      : path_(std::move(path)), options_(std::move(options)), caching_(cache) {}
  bool listFiles(Diagnostics& diags);

  std::string path_;
  LoadOptions options_;
  bool caching_ = true;
  std::vector<std::string> files_;
  std::vector<std::string> directories_;
  std::size_t filesParsed_ = 0;
  std::map<std::string, Fragment> cache_;  // by path; only fragments that parsed without errors
  std::uint64_t nextGeneration_ = 1;
  model::GroupRuleMemo memo_;
};

// Merges fragments (in order) into one model: objects keep file order, then
// order in file; an object two fragments define, or `limits:` in two, is an
// error at the second with a hint naming the first, and the second is left
// out. The result still needs model::validate.
model::Model mergeFragments(const std::vector<const model::Model*>& fragments, Diagnostics& diags);

}  // namespace vpcfw::config
