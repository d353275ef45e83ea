// Lines appended to an open file by a thread of their own, in order. append() hands over a
// function that makes the line; it runs on that thread, so the caller pays for a copy of what
// the function holds, not for the formatting (a sink-metrics record at GPT-2's sizes is about
// 25,000 numbers: 0.95 ms of text on a 2-core machine, which on a GPU fell between a step's
// last read-back and the next step's first kernel).
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace sinklab::train {

class BackgroundLines {
 public:
  // `out` (open, outliving this object) receives the lines; `path` names it in errors.
  BackgroundLines(std::ofstream& out, std::string path);
  // Writes every line still queued, then stops; an error then is reported on stderr.
  ~BackgroundLines();
  BackgroundLines(const BackgroundLines&) = delete;
  BackgroundLines& operator=(const BackgroundLines&) = delete;

  // Queues one line: make_line() runs on the writer thread and returns the line without its
  // newline. Rethrows, here, the error of a line queued before (once).
  void append(std::function<std::string()> make_line);
  // Waits until every line queued so far is in `out` (the stream's buffer; the caller flushes
  // and syncs the file). Throws what a line's function threw, or IOError naming the file when
  // the stream failed.
  void drain();

 private:
  void run();
  void rethrow_error();  // with mu_ held

  std::ofstream& out_;
  const std::string path_;
  std::mutex mu_;
  std::condition_variable work_;  // a line queued, or stop
  std::condition_variable idle_;  // the queue ran empty
  std::deque<std::function<std::string()>> queue_;
  bool writing_ = false;  // the thread holds a line it took off the queue
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace sinklab::train
