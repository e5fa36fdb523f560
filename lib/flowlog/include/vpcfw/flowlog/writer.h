// Where records go: files in the S3 key layout (gzip, header line, a new file
// every 5 minutes or at 75 MB, each written under a temporary name and
// renamed when complete), one appended stream file per ENI (like CloudWatch
// Logs' log streams), or a file descriptor such as standard output.
// Directories are made 0755 and files 0640 without following a symlink at
// any component of their paths: a path that holds one is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/flowlog/format.h"
#include "vpcfw/flowlog/record.h"

namespace vpcfw::flowlog {

class Writer {
 public:
  virtual ~Writer() = default;
  // Writes the records of closed intervals; `now` (Unix seconds) drives rotation.
  [[nodiscard]] virtual Expected<void> write(const std::vector<Record>& records, std::int64_t now) = 0;
  // Completes what is open (the S3 layout's current file) so that readers see it.
  [[nodiscard]] virtual Expected<void> close() = 0;
};

struct S3LayoutOptions {
  std::string prefix;  // an absolute directory: the "bucket" and its prefix
  std::string accountId, region;
  std::string flowLogId;  // fl-...
  Format format = Format::defaultFormat();
  std::int64_t rotateSeconds = 300;                      // a new file every 5 minutes (aligned)
  std::uint64_t maxFileBytes = std::uint64_t{75} << 20;  // or when a file's compressed size reaches this
};

// PREFIX/AWSLogs/{account}/vpcflowlogs/{region}/YYYY/MM/DD/
// {account}_vpcflowlogs_{region}_{flow-log-id}_{YYYYMMDDTHHmmZ}_{hash}.log.gz,
// the date and time those of the file's 5-minute window (UTC). A file is open
// from the first record of its window; it is renamed into place when the
// window ends (at the next write() or close()) or when it reaches the size.
// The temporary name is the final name with a leading '.' and a ".tmp" end.
std::unique_ptr<Writer> makeS3LayoutWriter(S3LayoutOptions options);

// The directory of a file of the layout, relative to the prefix, and its
// name: exposed for tests and for readers that look files up by date.
std::string s3LayoutDirectory(const std::string& accountId, const std::string& region, std::int64_t time);
std::string s3LayoutFileName(const std::string& accountId, const std::string& region, const std::string& flowLogId,
                             std::int64_t windowStart, std::string_view hash);

// DIR/{interface-id}.log per ENI: a header line (the field names) when the
// file is made, then one line per record, appended. A file that exists with
// another header is an error (the format changed: move the old streams away).
std::unique_ptr<Writer> makeStreamWriter(std::string directory, Format format);

// Lines to `fd` (not closed), the header line first when `header`.
std::unique_ptr<Writer> makeFdWriter(int fd, Format format, bool header);

// Opens `path` (absolute) as a directory, making missing components 0755,
// following no symlink: each component is opened with O_NOFOLLOW relative
// to its parent. Returns the directory's descriptor (the caller closes it).
[[nodiscard]] Expected<int> openDirectoryNoFollow(const std::string& path, bool create);

}  // namespace vpcfw::flowlog
