#include "train/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

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

// This host's name with every character but letters, digits and '_' made '_' (so that it holds
// neither the '.' before it nor the '-' after it in a .tmp's name, nor a '/').
const std::string& host_name() {
  static const std::string name = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return std::string("host");
    std::string n(buf);
    for (char& c : n)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
    return n;
  }();
  return name;
}

// "<host>-<pid>-<nonce>": the owner part of this process's .tmp names; the nonce (8 hex digits)
// is drawn once per process.
const std::string& tmp_owner() {
  static const std::string owner = [] {
    std::random_device entropy;
    char nonce[9];
    std::snprintf(nonce, sizeof nonce, "%08x", static_cast<unsigned>(entropy()));
    return host_name() + "-" + std::to_string(::getpid()) + "-" + nonce;
  }();
  return owner;
}

// The "<pid>-<8 hex digits>" of a .tmp name "<file>.<host>-<pid>-<8 hex digits>.tmp" written
// on this host; "" for any other name.
std::string owner_on_this_host(const std::string& name) {
  const std::string suffix = ".tmp";
  if (name.size() <= suffix.size() + 9 || name.compare(name.size() - 4, 4, suffix) != 0) return {};
  const std::string owner = name.substr(0, name.size() - suffix.size());
  const size_t nonce_dash = owner.size() - 9;  // "-" + 8 hex digits
  if (owner[nonce_dash] != '-') return {};
  for (size_t i = nonce_dash + 1; i < owner.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(owner[i]))) return {};
  const size_t pid_dash = owner.rfind('-', nonce_dash - 1);
  if (pid_dash == std::string::npos || pid_dash + 1 == nonce_dash) return {};
  const std::string pid = owner.substr(pid_dash + 1, nonce_dash - pid_dash - 1);
  if (pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) return {};
  const std::string host = "." + host_name();
  if (pid_dash < host.size() || owner.compare(pid_dash - host.size(), host.size(), host) != 0)
    return {};
  return owner.substr(pid_dash + 1);
}

}  // namespace

int remove_stale_tmp_files(const std::string& folder) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string owner = owner_on_this_host(entry.path().filename().string());
    if (owner.empty() || !entry.is_regular_file(ec)) continue;
    const long pid = std::stol(owner.substr(0, owner.find('-')));
    // Gone: kill(pid, 0) says no such process (EPERM: one that runs, of another user); or this
    // process's pid with another nonce: an earlier process that had it (a restarted container).
    const std::string& mine = tmp_owner();  // "<host>-<pid>-<nonce>"
    const bool is_mine = mine.size() > owner.size() &&
                         mine.compare(mine.size() - owner.size(), owner.size(), owner) == 0;
    const bool ended = pid == ::getpid() ? !is_mine
                                         : ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (ended) stale.push_back(entry.path());
  }
  int removed = 0;
  for (const fs::path& file : stale) removed += fs::remove(file, ec) ? 1 : 0;
  return removed;
}

namespace {

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
      tmp_(path_ + "." + tmp_owner() + ".tmp"),
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
