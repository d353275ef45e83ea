// Files written all-or-nothing: the bytes go to <path>.<host>-<pid>-<nonce>.tmp, which is
// fsynced, renamed over <path>, and then the folder is fsynced so the rename itself survives a
// crash. A reader sees the old file or the new one, never a part; a SIGKILL during the write
// leaves only a stale .tmp beside the old file, which remove_stale_tmp_files clears later. The
// writer's host, process id and a random number drawn once per process keep two processes
// writing one file (`train --variant` runs of one config share the run folder's config.yaml;
// containers with the same pids on a shared file system) off each other's .tmp.
// Every file sinklab writes goes through here.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace sinklab::train {

// Writes `bytes` to `path` atomically. `hint` is what the IOError suggests when the folder
// cannot be written.
void write_file_atomic(const std::string& path, std::string_view bytes,
                       const std::string& hint = "check that the folder exists and is writable");

// The .tmp files in `folder` (not below it) that a process of this host wrote and that is no
// longer running (a SIGKILL mid-write): removed; also those with this process's pid but another
// nonce (an earlier process that had the pid: a restarted container). Those of other hosts, of
// running processes and of any other name stay. Two containers that share a host name but not
// their pids can take each other's for ended: give containers their own host names. Returns
// how many were removed; best effort (a file that cannot be removed is left).
int remove_stale_tmp_files(const std::string& folder);

// One atomic file, filled piece by piece: by write() (blocks of a large file), or by another
// library that writes tmp_path() itself (HDF5) and closes it before commit().
class AtomicFile {
 public:
  explicit AtomicFile(std::string path,
                      std::string hint = "check that the folder exists and is writable");
  ~AtomicFile();  // without commit(): removes the .tmp (an error path), the old file stays
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_; }
  // Appends to the .tmp (created on the first call). Throws IOError naming it on failure.
  void write(const void* data, size_t bytes);
  // fsync and close the .tmp, rename it over path(), fsync the folder (best effort: some file
  // systems refuse to sync a folder). Throws IOError naming both paths on failure.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what, int err, const std::string& hint);
  std::string path_, tmp_, hint_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace sinklab::train
