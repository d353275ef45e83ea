#include "train/commands/probe_plan.h"

#include <fstream>
#include <iomanip>
#include <sstream>

#include "core/error.h"
#include "train/phase_clock.h"

namespace sinklab::train {

namespace {

// Positions and layers are indices: "-2" is refused with a message that says so (CLI11's
// NonNegativeNumber prints the range up to the largest double, 310 digits).
const CLI::Validator kIndex(
    [](std::string& value) {
      const size_t first = value.find_first_not_of(" \t");
      return first != std::string::npos && value[first] == '-'
                 ? "an index (a position or a layer) is 0 or more, not " + value
                 : std::string();
    },
    "INDEX", "index");

}  // namespace

std::vector<CLI::Option*> add_probe_measure_options(CLI::App& app, ProbeOptions& opt,
                                                    int64_t& scale_position) {
  std::vector<CLI::Option*> added;
  // Positions and layers are indices: a negative one is refused here, naming the option (a
  // negative --amplify or --scale had read as "off" and run no intervention).
  added.push_back(app.add_option("--isolate", opt.isolate,
                                 "positions k whose query sees only itself")
                      ->delimiter(',')
                      ->check(kIndex));
  CLI::Option* amplify =
      app.add_option("--amplify", opt.amplify,
                     "k: o_k <- mu + lambda (o_k - mu), mu the mean value vector")
          ->check(kIndex);
  CLI::Option* scale = app.add_option("--scale", scale_position,
                                      "k: o_k <- lambda o_k (the plain-scaling control)")
                           ->check(kIndex);
  amplify->excludes(scale);
  added.push_back(amplify);
  added.push_back(scale);
  added.push_back(app.add_option("--lambda", opt.lambda, "the factor of --amplify / --scale"));
  added.push_back(app.add_option("--layers", opt.layers,
                                 "layers of the interventions (default all)")
                      ->delimiter(',')
                      ->check(kIndex));
  added.push_back(app.add_option(
      "--amplify-mean", opt.amplify_mean,
      "mu of --amplify: random (each layer's mean value vector over uniform-random tokens, the "
      "paper's; default) or batch (the probed batch)"));
  added.push_back(app.add_option(
      "--amplify-site", opt.amplify_site,
      "where --amplify / --scale act: before_norm (the attention output, the paper's; default) "
      "or after_norm (head-wise RMSNorm's output, the input to W_O, which the norm cannot "
      "rescale back)"));
  added.push_back(app.add_option(
      "--mean-tokens", opt.mean_tokens,
      "uniform-random tokens of the random mu (default 50000, the paper's)"));
  added.push_back(app.add_option("--window", opt.window,
                                 "read T-token windows instead of the model's T (the paper: 64)"));
  added.push_back(app.add_option(
      "--random-tokens", opt.random_tokens,
      "N: also run N uniform-random sequences for the across-sample variance of the 1/(t+1) "
      "law (the paper: about 50,000 tokens)"));
  return added;
}

void resolve_scale(ProbeOptions& opt, int64_t scale_position) {
  if (scale_position < 0) return;
  opt.amplify = scale_position;
  opt.plain_scaling = true;
}

std::vector<ProbePlanLine> read_probe_plan(const std::string& path, const ProbeOptions& base) {
  std::ifstream in(path);
  SINKLAB_CHECK(in.good(), IOError, "probe: cannot read the plan " << path,
                "give a file with one probe's options a line, e.g. '--isolate 9' or 'none'");
  // A line starts from the defaults: only what the command line alone may set holds for every
  // line (the measurement options are add_probe_measure_options').
  ProbeOptions command_line;
  command_line.batches = base.batches;
  command_line.device = base.device;
  command_line.overrides = base.overrides;
  command_line.out = base.out;
  std::vector<ProbePlanLine> plan;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    std::string line = text.substr(0, text.find('#'));
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;  // blank or a comment
    line = line.substr(first, line.find_last_not_of(" \t\r") + 1 - first);
    ProbePlanLine entry{path, number, line, command_line};
    if (line != "none") {
      CLI::App app("a line of a probe plan");
      int64_t scale_position = -1;
      add_probe_measure_options(app, entry.options, scale_position);
      try {
        app.parse(line, false);
      } catch (const CLI::CallForHelp&) {
        SINKLAB_FAIL(ConfigError, path << ":" << number << ": '" << line << "' asks for help",
                     "run `sinklab probe --help` for the options; a plan line holds one probe's");
      } catch (const CLI::ParseError& e) {
        SINKLAB_FAIL(ConfigError, path << ":" << number << ": '" << line << "': " << e.what(),
                     "a plan line holds what one probe measures (--isolate, --amplify, --scale, "
                     "--lambda, --layers, --amplify-mean, --mean-tokens, --window, "
                     "--random-tokens) or 'none'; --batches, --device and --set go on the "
                     "command line and hold for every line");
      }
      resolve_scale(entry.options, scale_position);
    }
    try {
      check_probe_options(entry.options);
    } catch (const ConfigError& e) {
      SINKLAB_FAIL(ConfigError, path << ":" << number << ": " << e.message(), e.hint());
    }
    plan.push_back(std::move(entry));
  }
  SINKLAB_CHECK(!plan.empty(), ConfigError, "probe: the plan " << path << " has no probe",
                "write one probe's options a line, or 'none' for one without an intervention");
  return plan;
}

std::vector<ProbeResult> probe_plan(const std::string& model_path,
                                    const std::vector<ProbePlanLine>& plan,
                                    const std::string& out_prefix, std::ostream& console) {
  SINKLAB_CHECK(!plan.empty(), ConfigError, "probe: an empty plan", "give at least one probe");
  const auto seconds_text = [](Clock::time_point t) {
    std::ostringstream o;
    o << std::fixed << std::setprecision(1) << seconds_since(t) << " s";
    return o.str();
  };
  // Names the plan's line in front of an error of its probe.
  const auto at_line = [](const ProbePlanLine& p, const auto& probe) {
    try {
      return probe();
    } catch (const ConfigError& e) {
      SINKLAB_FAIL(ConfigError, p.file << ":" << p.line << ": '" << p.text << "': " << e.message(),
                   e.hint());
    }
  };
  const auto read_start = Clock::now();
  const LoadedProbeModel model = load_probe_model(model_path, plan.front().options);
  console << "read " << model.checkpoint << " once for " << plan.size()
          << " probes: " << seconds_text(read_start) << "\n";
  for (const ProbePlanLine& p : plan)  // every line fits the model before the first probe
    at_line(p, [&] { return probe_run_config(model, p.options); });
  const std::string prefix = out_prefix.empty() ? model.checkpoint + ".probe" : out_prefix;
  std::vector<ProbeResult> results;
  for (size_t i = 0; i < plan.size(); ++i) {
    ProbeOptions options = plan[i].options;
    options.out = prefix + "_" + std::to_string(i + 1) + ".json";
    console << "== probe " << i + 1 << " of " << plan.size() << " (line " << plan[i].line
            << "): " << plan[i].text << "\n";
    const auto start = Clock::now();
    results.push_back(at_line(plan[i], [&] { return probe_loaded(model, options, console); }));
    console << "   " << seconds_text(start) << "\n";
    console.flush();  // a call cut short keeps the probes done
  }
  return results;
}

}  // namespace sinklab::train
