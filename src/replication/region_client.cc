#include "replication/region_client.h"

#include <spdlog/spdlog.h>

namespace foryou {

std::unique_ptr<httplib::Client> RegionClient(const std::string& url, const RegionClientOptions& o) {
  const bool loopback = url.rfind("http://127.0.0.1", 0) == 0 || url.rfind("http://localhost", 0) == 0 ||
                        url.rfind("http://[::1]", 0) == 0;
  if (url.rfind("http://", 0) == 0 && !loopback && !o.api_key.empty()) {
    spdlog::warn("{}: plain HTTP beyond loopback; this region's API key crosses the network in the clear (use https://)",
                 url);
  }
  auto client = o.cert_file.empty() ? std::make_unique<httplib::Client>(url)
                                    : std::make_unique<httplib::Client>(url, o.cert_file, o.key_file);
  if (!o.api_key.empty()) client->set_bearer_token_auth(o.api_key);
  client->set_connection_timeout(o.connect_timeout_s, 0);
  client->set_read_timeout(o.read_timeout_s, 0);
  client->set_write_timeout(o.read_timeout_s, 0);
  client->set_keep_alive(true);
  // Without it a request body waits for the peer's delayed ACK (Nagle): ~40 ms.
  client->set_tcp_nodelay(true);
  client->enable_server_certificate_verification(true);
  if (!o.ca_file.empty()) client->set_ca_cert_path(o.ca_file.c_str());
  return client;
}

}  // namespace foryou
