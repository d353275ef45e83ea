#include "train/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

// fsync of a file or folder; false when it cannot be opened or synced.
bool fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& hint) {
  AtomicFile file(path, hint);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

AtomicFile::AtomicFile(std::string path, std::string hint)
    : path_(std::move(path)),
      tmp_(path_ + "." + std::to_string(::getpid()) + ".tmp"),
      hint_(std::move(hint)) {}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());  // nothing, or a partial file: never left behind
}

void AtomicFile::fail(const std::string& what, int err, const std::string& hint) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  SINKLAB_FAIL(IOError, tmp_ << ": " << what << " (" << std::strerror(err) << ")", hint);
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (fd_ < 0) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) fail("cannot create", errno, hint_);
  }
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd_, p, bytes);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write failed", errno, "check the free disk space");
    p += w;
    bytes -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) {  // written by another library (or empty): open it to sync it
    if (!fs::exists(tmp_)) write(nullptr, 0);
    fd_ = ::open(tmp_.c_str(), O_RDONLY);
    if (fd_ < 0) fail("cannot open to flush", errno, hint_);
  }
  const bool synced = ::fsync(fd_) == 0;
  const int sync_err = errno;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed) fail("flushing failed", synced ? errno : sync_err,
                               "check the free disk space");
  std::error_code ec;
  fs::rename(tmp_, path_, ec);
  if (ec) {
    ::unlink(tmp_.c_str());
    SINKLAB_FAIL(IOError, "cannot rename " << tmp_ << " to " << path_ << " (" << ec.message()
                                           << ")",
                 "check the folder's permissions");
  }
  committed_ = true;
  fsync_path(folder_of(path_), true);  // makes the rename durable; best effort
}

}  // namespace sinklab::train
