// The rank watch (train/dist/rank_watch.h) between 3 ranks played by threads, over the
// connections the NCCL id bootstrap keeps: a rank whose watch ends while an exception unwinds
// (a rank that failed) is named to every other rank at once, rank 0's own death too, and a
// clean end reports nothing. Also the process-wide note a waiting NCCL collective polls.
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/peer_failure.h"
#include "tests/catch.h"
#include "train/dist/bootstrap.h"
#include "train/dist/rank_watch.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

// What each rank's watch reported, in order.
struct Reports {
  std::mutex mutex;
  std::vector<std::vector<std::string>> by_rank;
  explicit Reports(int world) : by_rank(world) {}
  RankWatch::FailureSink sink(int r) {
    return [this, r](const std::string& what) {
      std::lock_guard<std::mutex> lock(mutex);
      by_rank[r].push_back(what);
    };
  }
  std::vector<std::string> of(int r) {
    std::lock_guard<std::mutex> lock(mutex);
    return by_rank[r];
  }
  // Waits up to 10 s for rank r's first report.
  bool wait_for(int r) {
    for (int i = 0; i < 1000; ++i) {
      if (!of(r).empty()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

// Runs a job of 3 ranks as threads (ranks 0-2 of a variant's group that starts at world rank
// `first` when first > 0): each fetches the id keeping its connections and starts its watch;
// rank `dies` (-1: none) then ends its watch while an exception unwinds, and the others keep
// theirs until they got a report (or, with none dying, until all watches are up).
void run_job(int port, int first, int dies, Reports& reports) {
  const int world = 3;
  std::vector<std::thread> threads;
  std::mutex up_mutex;
  int up = 0;
  auto all_up = [&] {
    std::lock_guard<std::mutex> lock(up_mutex);
    return up == world;
  };
  for (int r = world - 1; r >= 0; --r) {
    threads.emplace_back([&, r] {
      LaunchEnv env;
      env.rank = r;
      env.world_size = world;
      env.id_port = port;
      env.first_rank = first;
      env.variant_group = first > 0;
      std::vector<Socket> connections;
      share_from_rank0(env, r == 0 ? "id" : "", 30, &connections);
      auto watch = std::make_unique<RankWatch>(env, std::move(connections), reports.sink(r));
      {
        std::lock_guard<std::mutex> lock(up_mutex);
        ++up;
      }
      while (!all_up()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (r == dies) {
        try {
          std::unique_ptr<RankWatch> failing = std::move(watch);
          throw std::runtime_error("this rank failed");
        } catch (const std::runtime_error&) {
        }
        return;
      }
      if (dies >= 0) reports.wait_for(r);
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

TEST_CASE("rank watch: a failed rank is named to every rank at once; a clean end says nothing",
          "[distributed]") {
  const int port = 20000 + (::getpid() * 7 + 40) % 20000;
  {  // rank 2 fails: rank 0 sees its connection close, and tells rank 1
    Reports reports(3);
    run_job(port, 0, 2, reports);
    REQUIRE(reports.of(0) == std::vector<std::string>{
                                 "rank 0: rank 2 died (its connection to rank 0 closed without a "
                                 "goodbye): its process ended; see its log"});
    REQUIRE(reports.of(1) == std::vector<std::string>{
                                 "rank 1: rank 2 died (rank 0 saw its connection close without a "
                                 "goodbye): its process ended; see its log"});
    REQUIRE(reports.of(2).empty());
  }
  {  // rank 0 fails: each other rank sees its own connection close
    Reports reports(3);
    run_job(port + 1, 0, 0, reports);
    for (int r : {1, 2}) {
      INFO("rank " << r);
      REQUIRE(reports.of(r).size() == 1);
      REQUIRE(reports.of(r)[0] == "rank " + std::to_string(r) +
                                      ": rank 0 died (its connection closed without a goodbye): "
                                      "see its log");
    }
  }
  {  // a variant's group (world ranks 4-6): world ranks in the names
    Reports reports(3);
    run_job(port + 2, 4, 1, reports);
    REQUIRE(reports.of(0).size() == 1);
    REQUIRE(reports.of(0)[0].find("rank 4 (rank 0 of its variant's group): rank 5 (rank 1 of its "
                                  "variant's group) died") == 0);
    REQUIRE(reports.of(2).size() == 1);
    REQUIRE(reports.of(2)[0].find("rank 6 (rank 2 of its variant's group): rank 5 died") == 0);
  }
  {  // every rank ends cleanly (goodbyes), in any order: nothing is reported
    Reports reports(3);
    run_job(port + 3, 0, -1, reports);
    for (int r = 0; r < 3; ++r) REQUIRE(reports.of(r).empty());
  }
}

TEST_CASE("peer failure: the first report is kept until cleared", "[distributed]") {
  clear_peer_failure();
  REQUIRE_FALSE(peer_failure());
  report_peer_failure("rank 1: rank 3 died");
  report_peer_failure("rank 1: rank 0 died");  // later news of the same job's end: dropped
  REQUIRE(peer_failure() == std::optional<std::string>("rank 1: rank 3 died"));
  clear_peer_failure();
  REQUIRE_FALSE(peer_failure());
}
