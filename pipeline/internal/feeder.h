// Feeder: the embedded demo's producer (`rotor serve --feed FILE`). It produces a JSON-lines
// file into the input topic on its own thread while the daemon serves, at most `max_ahead`
// events ahead of what the daemon has processed (the mock cluster keeps only about 5 MiB per
// partition, so running far ahead would lose events).
//
// Lifecycle: Start once; Stop (or destruction) ends the thread.
// Concurrency: done() and fed() may be read from any thread.

#ifndef ROTOR_PIPELINE_INTERNAL_FEEDER_H_
#define ROTOR_PIPELINE_INTERNAL_FEEDER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace rotor::pipeline::internal {

class Feeder {
 public:
  // `processed` is the daemon's count of records processed; it must outlive the Feeder.
  Feeder(std::string bootstrap_servers, std::string topic, std::string file, int64_t max_ahead,
         const std::atomic<int64_t>& processed);
  ~Feeder();
  Feeder(const Feeder&) = delete;
  Feeder& operator=(const Feeder&) = delete;

  void Start();
  void Stop();
  // The whole file was produced (or producing it failed, which is logged).
  bool done() const { return done_.load(); }
  // Events produced so far.
  int64_t fed() const { return fed_.load(); }

 private:
  void Feed();

  std::string bootstrap_servers_;
  std::string topic_;
  std::string file_;
  int64_t max_ahead_;
  const std::atomic<int64_t>& processed_;
  std::atomic<int64_t> fed_{0};
  std::atomic<bool> done_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_FEEDER_H_
