// GET /console/...: the web console (console/, docs/CONSOLE.md), served from
// the files compiled into the binary (api/console_assets.h). Static files
// only: every action the console takes is a request to the public API from
// the browser, with the key its user typed, so it can do nothing the API
// would not let that key do.
//
// Each file goes out with a Content-Security-Policy that allows scripts,
// styles and connections to this origin only (no inline script, no third
// party), and no caching across versions (Cache-Control: no-cache).
#include <string_view>

#include "api/console_assets.h"
#include "api/json_codec.h"
#include "api/route.h"

namespace foryou {

namespace {

const char* ContentType(std::string_view path) {
  auto ends = [&](std::string_view ext) { return path.ends_with(ext); };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

Reply Asset(std::string_view path) {
  for (const ConsoleAsset& a : ConsoleAssets()) {
    if (a.path != path) continue;
    Reply r{200, std::string(a.bytes), ContentType(path)};
    r.headers = {{"Content-Security-Policy",
                  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cache-Control", "no-cache"}};
    return r;
  }
  return Reply{404, ErrorToJson("not_found", "no such file in the console")};
}

}  // namespace

void HttpServer::InstallConsoleRoutes() {
  AddRoute("GET", "/console", "console", [](const HttpRequest&) {
    Reply r{308, R"({"moved_to":"/console/"})"};
    r.headers = {{"Location", "/console/"}};
    return r;
  });
  AddRoute("GET", "/console/", "console", [](const HttpRequest&) { return Asset("index.html"); });
  AddRoute("GET", R"(/console/([A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[a-z]+))", "console",
           [](const HttpRequest& req) { return Asset(req.matches[1]); });
  routes_.back().templ = "/console/{file}";
}

}  // namespace foryou
