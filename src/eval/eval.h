// foryou eval: replays a real dataset through the engine's own write path
// (the same online learning that serves /v1/feed) and measures ranking
// quality under a published protocol, next to baselines computed in the same
// run. See docs/EVALUATION.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/options.h"
#include "util/status.h"

namespace foryou {

struct EvalOptions {
  uint64_t seed = 42;    // splits, replay order and tie-breaking
  size_t max_users = 0;  // 0: every user; else the first N users of the file
  int threads = 2;       // scoring threads
  std::string attributes_file;  // s3rec: optional item2attributes.json, used as tags
  // s3rec: what the engine does with each user's validation item before the
  // test item is ranked. "learn" (the default): it is an event like any
  // other, learned from as an online system does. "context": it only
  // extends the user's history (Engine::ExtendHistory), no model parameter
  // moves, as the offline papers (S3-Rec, ICLRec, BSARec) use it.
  std::string validation = "learn";
  EngineOptions engine;  // the engine configuration under test
};

struct CurvePoint {
  double progress;  // fraction of training events replayed
  double hr10, ndcg10;
  size_t samples;
};

struct EvalReport {
  std::string protocol;  // "s3rec" or "kuairec"
  std::string dataset;   // file stem, e.g. "Beauty"
  size_t users = 0, items = 0, train_events = 0;
  std::map<std::string, double> metrics;                          // the engine's
  std::map<std::string, std::map<std::string, double>> baselines;  // name -> metrics
  std::map<std::string, double> validation;  // s3rec: the engine on the validation item; kuairec: on the validation split
  std::string objectives;  // kuairec: the objective weights chosen on validation
  std::string validation_use;  // s3rec: "learn" or "context" (EvalOptions::validation)
  // s3rec with --attributes: the in-session response (eval/session_lean.h)
  // after the test ranking, on up to 500 users: users, related_before,
  // related_after, lean, same_creator_after, creators_after.
  std::map<std::string, double> session;
  std::vector<CurvePoint> curve;             // s3rec: prequential next-item metrics during training
  double train_seconds = 0, eval_seconds = 0, peak_rss_mb = 0;
};

Result<EvalReport> RunS3RecEval(const std::string& file, const EvalOptions& options);
Result<EvalReport> RunKuaiRecEval(const std::string& file, const EvalOptions& options);

std::string ReportToJson(const EvalReport& report);
std::string ReportToTable(const EvalReport& report);
// A line chart of the training curve (SVG, self-contained).
std::string CurveToSvg(const EvalReport& report);

double PeakRssMb();

}  // namespace foryou
