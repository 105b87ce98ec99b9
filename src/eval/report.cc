#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "eval/eval.h"

namespace foryou {

double PeakRssMb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

std::string ReportToJson(const EvalReport& r) {
  nlohmann::json j;
  j["protocol"] = r.protocol;
  j["dataset"] = r.dataset;
  j["users"] = r.users;
  j["items"] = r.items;
  j["train_events"] = r.train_events;
  for (const auto& [k, v] : r.metrics) j[k] = v;
  j["train_seconds"] = r.train_seconds;
  j["eval_seconds"] = r.eval_seconds;
  j["peak_rss_mb"] = r.peak_rss_mb;
  j["baselines"] = nlohmann::json::object();
  for (const auto& [name, m] : r.baselines) j["baselines"][name] = m;
  if (!r.validation.empty()) j["validation"] = r.validation;
  if (!r.objectives.empty()) j["objectives"] = r.objectives;
  if (!r.validation_use.empty()) j["validation_use"] = r.validation_use;
  if (!r.session.empty()) j["session"] = r.session;
  if (!r.curve.empty()) {
    auto& c = j["curve"] = nlohmann::json::array();
    for (const auto& p : r.curve) {
      c.push_back({{"progress", p.progress}, {"hr@10", p.hr10}, {"ndcg@10", p.ndcg10}, {"samples", p.samples}});
    }
  }
  return j.dump();
}

std::string ReportToTable(const EvalReport& r) {
  std::string out = fmt::format("{} protocol on {}: {} users, {} items, {} training events\n", r.protocol, r.dataset,
                                r.users, r.items, r.train_events);
  std::vector<std::string> keys;
  for (const auto& [k, v] : r.metrics) keys.push_back(k);
  out += fmt::format("{:<10}", "model");
  for (const auto& k : keys) out += fmt::format("{:>10}", k);
  out += "\n";
  auto row = [&](const std::string& name, const std::map<std::string, double>& m) {
    out += fmt::format("{:<10}", name);
    for (const auto& k : keys) {
      auto it = m.find(k);
      out += it == m.end() ? fmt::format("{:>10}", "-") : fmt::format("{:>10.4f}", it->second);
    }
    out += "\n";
  };
  row("foryou", r.metrics);
  for (const auto& [name, m] : r.baselines) row(name, m);
  if (!r.validation.empty()) row("(valid)", r.validation);
  if (!r.objectives.empty()) out += fmt::format("objectives (chosen on validation): {}\n", r.objectives);
  if (!r.session.empty()) {
    out += fmt::format("session (a like, then the next 10 items; {:.0f} users): related before {:.3f}, after {:.3f}, "
                       "lean {:+.3f}; distinct creators per item after {:.3f}\n",
                       r.session.at("users"), r.session.at("related_before"), r.session.at("related_after"),
                       r.session.at("lean"), r.session.at("creators_after"));
  }
  if (r.validation_use == "context") {
    out += "validation items: history only (no model parameter learned from them; --validation context)\n";
  } else if (!r.validation_use.empty()) {
    out += "validation items: learned from, as events (online; --validation context for the offline protocol)\n";
  }
  out += fmt::format("train {:.1f} s, eval {:.1f} s, peak RSS {:.0f} MB\n", r.train_seconds, r.eval_seconds,
                     r.peak_rss_mb);
  return out;
}

std::string CurveToSvg(const EvalReport& r) {
  const double w = 640, h = 360, ml = 60, mr = 20, mt = 40, mb = 50;
  double ymax = 0;
  for (const auto& p : r.curve) ymax = std::max({ymax, p.hr10, p.ndcg10});
  ymax = ymax <= 0 ? 0.1 : ymax * 1.15;
  auto X = [&](double x) { return ml + x * (w - ml - mr); };
  auto Y = [&](double y) { return h - mb - y / ymax * (h - mt - mb); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"14\">foryou on {} ({}): next-item HR@10 and NDCG@10 during online training</text>\n",
      w, h, ml, r.dataset, r.protocol);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", ml, h - mb, w - mr);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", ml, mt, h - mb);
  for (int i = 0; i <= 4; ++i) {
    const double y = ymax * i / 4;
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3f}</text>\n", ml - 6, Y(y) + 4, y);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", ml, Y(y), w - mr, Y(y));
  }
  for (int i = 0; i <= 10; i += 2) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}%</text>\n", X(i / 10.0), h - mb + 18, i * 10);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">training events replayed</text>\n", (ml + w - mr) / 2, h - 10);
  auto line = [&](auto get, const char* color, const char* name, int legend_row) {
    std::string pts;
    for (const auto& p : r.curve) pts += fmt::format("{:.1f},{:.1f} ", X(p.progress), Y(get(p)));
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, pts);
    for (const auto& p : r.curve) s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", X(p.progress), Y(get(p)), color);
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                     ml + 12, mt + 8 + legend_row * 16, color, ml + 30, mt + 13 + legend_row * 16, name);
  };
  line([](const CurvePoint& p) { return p.hr10; }, "#1f77b4", "HR@10", 0);
  line([](const CurvePoint& p) { return p.ndcg10; }, "#d62728", "NDCG@10", 1);
  s += "</svg>\n";
  return s;
}

}  // namespace foryou
