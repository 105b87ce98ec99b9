// RegionClient: an HTTP(S) client for another region's server, as the
// shipper, `foryou restore` and `foryou migrate` use it. For an https:// URL
// the server's certificate is verified (against `ca_file`, a PEM bundle, or
// the system's trust store when it is empty); a certificate that does not
// verify is a failed request, never a warning. With cert_file/key_file the
// client also proves who it is (mutual TLS).
#pragma once

#include <httplib.h>

#include <memory>
#include <string>

namespace foryou {

struct RegionClientOptions {
  std::string ca_file;      // PEM CA bundle for https:// URLs ("" = system CAs)
  std::string api_key;      // sent as Authorization: Bearer
  int connect_timeout_s = 10;
  int read_timeout_s = 10;
  // Mutual TLS: this region's client certificate and key (PEM), presented
  // to an https:// region that asks for one (backup endpoints).
  std::string cert_file, key_file;
};

std::unique_ptr<httplib::Client> RegionClient(const std::string& url, const RegionClientOptions& options);

}  // namespace foryou
