// JSON log lines for `foryou serve --log-format json`: every spdlog message
// (access log included) becomes one JSON object per line on stderr,
//   {"ts":"2026-12-01T05:40:01.123Z","level":"info","logger":"foryou","msg":"..."}
// with the message escaped as a JSON string, so a log shipper can parse
// every line whatever the message holds.
#pragma once

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

namespace foryou {

// The %* flag: the message, escaped for the inside of a JSON string.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(c);
      } else if (u < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        dest.append(buf, buf + 6);
      } else {
        dest.push_back(c);  // UTF-8 passes through; invalid bytes are the writer's
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

// Makes every logger of spdlog's registry write JSON lines (UTC times).
inline void UseJsonLogs() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n","msg":"%*"})");
  spdlog::set_formatter(std::move(formatter));
}

}  // namespace foryou
