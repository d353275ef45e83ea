// train/io/atomic_file.h: the file is replaced whole or not at all, and no .tmp stays behind.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/helpers.h"
#include "train/io/atomic_file.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {
std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
fs::path fresh_dir(const char* name) {
  const fs::path dir = fs::temp_directory_path() / (std::string(name) + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
}  // namespace

TEST_CASE("atomic_file: writes, replaces and leaves no .tmp", "[io]") {
  const fs::path dir = fresh_dir("sinklab_atomic_");
  const fs::path path = dir / "a.txt";
  write_file_atomic(path.string(), "first\n");
  REQUIRE(read_all(path) == "first\n");
  {
    AtomicFile file(path.string());
    // <path>.<host>-<pid>-<nonce>.tmp: two processes writing one file never share a .tmp
    const std::string tmp = file.tmp_path(), pid = "-" + std::to_string(::getpid()) + "-";
    REQUIRE(tmp.rfind(path.string() + ".", 0) == 0);
    REQUIRE(tmp.find(pid) != std::string::npos);
    REQUIRE(tmp.size() == tmp.find(pid) + pid.size() + 8 + 4);  // 8 hex digits, ".tmp"
    file.write("sec", 3);
    file.write("ond", 3);
    REQUIRE(fs::exists(file.tmp_path()));
    REQUIRE(read_all(path) == "first\n");  // the old file until commit
    file.commit();
    REQUIRE_FALSE(fs::exists(file.tmp_path()));
  }
  REQUIRE(read_all(path) == "second");
  // The only file: no .tmp.
  REQUIRE(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  REQUIRE(fs::exists(path));
  fs::remove_all(dir);
}

TEST_CASE("atomic_file: without commit the old file stays and the .tmp is removed", "[io]") {
  const fs::path dir = fresh_dir("sinklab_atomic_abort_");
  const fs::path path = dir / "b.txt";
  write_file_atomic(path.string(), "kept");
  std::string tmp;
  {
    AtomicFile file(path.string());
    file.write("partial", 7);
    tmp = file.tmp_path();
    REQUIRE(fs::exists(tmp));
  }  // an error path: no commit
  REQUIRE(read_all(path) == "kept");
  REQUIRE_FALSE(fs::exists(tmp));
  fs::remove_all(dir);
}

TEST_CASE("atomic_file: an unwritable folder is an IOError naming the file", "[io]") {
  const std::string path = "/nonexistent_sinklab_dir/x.txt";
  const IOError e = test::caught<IOError>([&] { write_file_atomic(path, "x", "pick a folder"); });
  REQUIRE(test::contains(e.what(), "/nonexistent_sinklab_dir/x.txt."));
  REQUIRE(test::contains(e.what(), "-" + std::to_string(::getpid()) + "-"));
  REQUIRE(e.hint() == "pick a folder");
}

TEST_CASE("atomic_file: stale .tmp files of this host's ended processes are removed, no other",
          "[io]") {
  const fs::path dir = fresh_dir("sinklab_atomic_stale_");
  const fs::path path = dir / "c.yaml";
  std::string mine;  // this process's .tmp name: "<path>.<host>-<pid>-<nonce>.tmp"
  {
    AtomicFile file(path.string());
    mine = file.tmp_path();
  }
  const std::string pid = "-" + std::to_string(::getpid()) + "-";
  const std::string host = mine.substr(path.string().size() + 1,
                                       mine.find(pid) - path.string().size() - 1);
  const pid_t child = ::fork();  // a process that has ended: its pid is free
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  ::waitpid(child, nullptr, 0);
  const auto name = [&](const std::string& h, long p) {
    return "c.yaml." + h + "-" + std::to_string(p) + "-0badf00d.tmp";
  };
  // This pid with another nonce: an earlier process that had the pid (a restarted container).
  const std::string nonce = mine.substr(mine.size() - 12, 8);
  const std::string earlier_me =
      "c.yaml." + host + pid + (nonce == "0badf00d" ? "0badf00e" : "0badf00d") + ".tmp";
  std::ofstream(dir / earlier_me) << "partial";
  std::ofstream(dir / fs::path(mine).filename()) << "mine";  // this process's own: kept
  const std::string stale = name(host, child), running = name(host, 1),
                    other_host = name(host + "x", child), other = "c.yaml.12345.tmp",
                    not_tmp = name(host, child) + ".keep";
  for (const std::string& f : {stale, running, other_host, other, not_tmp})
    std::ofstream(dir / f) << "partial";
  REQUIRE(remove_stale_tmp_files(dir.string()) == 2);
  REQUIRE_FALSE(fs::exists(dir / stale));
  REQUIRE_FALSE(fs::exists(dir / earlier_me));
  REQUIRE(fs::exists(mine));
  for (const std::string& f : {running, other_host, other, not_tmp}) {
    INFO(f);
    REQUIRE(fs::exists(dir / f));
  }
  REQUIRE(remove_stale_tmp_files((dir / "absent").string()) == 0);
  fs::remove_all(dir);
}
