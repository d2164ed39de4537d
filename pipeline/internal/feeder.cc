#include "pipeline/internal/feeder.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "pipeline/kafka_tools.h"

namespace rotor::pipeline::internal {

Feeder::Feeder(std::string bootstrap_servers, std::string topic, std::string file,
               int64_t max_ahead, const std::atomic<int64_t>& processed)
    : bootstrap_servers_(std::move(bootstrap_servers)),
      topic_(std::move(topic)),
      file_(std::move(file)),
      max_ahead_(max_ahead),
      processed_(processed) {}

Feeder::~Feeder() {
  Stop();
}

void Feeder::Start() {
  thread_ = std::thread([this] { Feed(); });
}

void Feeder::Stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Feeder::Feed() {
  ProduceOptions options;
  options.bootstrap_servers = bootstrap_servers_;
  options.topic = topic_;
  options.stop = &stop_;
  options.may_send = [this](int64_t sent) {
    fed_.store(sent);
    return sent - processed_.load() < max_ahead_;
  };
  auto result = ProduceJsonLines(file_, options);
  if (!result.ok()) {
    spdlog::error("feeding '{}': {}", file_, result.status());
  } else {
    fed_.store(result->sent);
    spdlog::info("fed {} events from '{}' in {:.1f} s", result->sent, file_, result->seconds);
  }
  done_ = true;
}

}  // namespace rotor::pipeline::internal
