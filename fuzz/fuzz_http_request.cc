// libFuzzer: bytes off a connection, as the HTTP transport reads them: the
// request parser with the server's limits, then the target's decoding.
#include <utility>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>

#include "api/http_transport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 << 10);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (parser.is_header_done()) {
    const auto target = parser.get().target();
    (void)foryou::PercentDecode(std::string_view(target.data(), target.size()), true);
  }
  return 0;
}
