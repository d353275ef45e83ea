// sinklab: train GPT-style models from YAML and measure their attention sinks.
//   sinklab train   <config.yaml> [--set k=v ...] [--variant NAME]
//   sinklab compare <config.yaml> [--set k=v ...]
//   sinklab prepare <config.yaml> [--set k=v ...]
//   sinklab probe   <checkpoint.h5> [--isolate k] [--amplify k | --scale k] [--lambda X] ...
//   sinklab report  <runs/name> [--out DIR]
//   sinklab export  <checkpoint.h5> --format safetensors|hf [--out PATH]
//   sinklab forward <checkpoint.h5 | hf folder> --ids 1,2,3 --out logits.safetensors
//   sinklab generate <checkpoint.h5 | hf folder> --prompt TEXT [--tokens N] [--top-k K] ...
//   sinklab tokenize --tokenizer SPEC (--file F | --text S) [--out ids.bin] [--write-hf DIR]
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <limits>

#include "core/error.h"
#include "train/backends.h"
#include "train/config.h"
#include "train/data/prepare.h"
#include "train/commands/bench_attention.h"
#include "train/commands/forward.h"
#include "train/commands/generate.h"
#include "train/commands/probe.h"
#include "train/commands/probe_plan.h"
#include "train/io/export.h"
#include "train/commands/reference_export.h"
#include "train/dist/data_parallel.h"
#include "train/commands/report.h"
#include "train/commands/tokenize.h"
#include "train/commands/training.h"

using namespace sinklab;

namespace {

void add_common(CLI::App* cmd, train::TrainingArgs& args) {
  cmd->add_option("config", args.config, "YAML run config (see configs/)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", args.overrides, "override a key, e.g. --set train.steps=100")
      ->take_all();
  cmd->add_flag("--no-progress", args.no_progress, "no live progress bar");
}

// A whole number in [low, high] ("0" and "-5" refused, naming the option: CLI11's
// PositiveNumber prints the range up to the largest double). `what` says what it counts.
CLI::Validator count_in(long long low, long long high, const std::string& what) {
  return CLI::Validator(
      [=](std::string& value) {
        char* end = nullptr;
        const long long n = std::strtoll(value.c_str(), &end, 10);
        if (end != value.c_str() && *end == '\0' && n >= low && n <= high) return std::string();
        return what + " from " + std::to_string(low) +
               (high == std::numeric_limits<long long>::max() ? std::string(" up")
                                                              : " to " + std::to_string(high)) +
               ", not " + value;
      },
      "COUNT", "count");
}

void add_resume(CLI::App* cmd, train::TrainingArgs& args) {
  // An empty value (an unset shell variable: --resume "$CKPT") would read as no --resume and
  // start afresh over the run's files.
  cmd->add_option("--resume", args.resume,
                  "continue from a checkpoint: auto (newest good one of each variant) or a "
                  "step_XXXXXXXX.h5 path")
      ->check(CLI::Validator(
          [](std::string& value) {
            return value.empty() ? std::string("auto or a checkpoint's path, "
                                               "not an empty value")
                                 : std::string();
          },
          "auto|PATH", "non-empty"));
  cmd->add_option("--stop-after", args.stop_after,
                  "stop with a checkpoint once this many steps are done (resume later)")
      ->check(count_in(1, std::numeric_limits<long long>::max(), "a number of steps"));
}

}  // namespace

// Whether `word` names one of app's commands.
bool is_command(CLI::App& app, const std::string& word) {
  for (const CLI::App* sub : app.get_subcommands({}))
    if (sub->get_name() == word) return true;
  return false;
}

int main(int argc, char** argv) {
  CLI::App app{"sinklab: train small GPTs side by side and measure their attention sinks"};
  app.require_subcommand(1);
  train::TrainingArgs train_args, compare_args, prepare_args;
  std::vector<std::string> train_variants;
  CLI::App* train_cmd = app.add_subcommand("train", "train one model (the base config, or "
                                                    "--variant NAME of its variants)");
  add_common(train_cmd, train_args);
  train_cmd->add_option("--variant", train_variants, "train only these variants");
  add_resume(train_cmd, train_args);
  train_cmd->add_option("--init-from", train_args.init_from,
                        "start from these weights (a checkpoint, or a Hugging Face model folder "
                        "or .safetensors file with its config.json) with a fresh optimizer");
  CLI::App* compare_cmd = app.add_subcommand(
      "compare", "train every variant of the config side by side on identical batches and "
                 "print a comparison table");
  add_common(compare_cmd, compare_args);
  add_resume(compare_cmd, compare_args);
  CLI::App* prepare_cmd = app.add_subcommand(
      "prepare", "train the tokenizer and write token shards from prepare.inputs");
  add_common(prepare_cmd, prepare_args);
  train::TrainingArgs reference_args;
  std::string reference_out;
  int64_t reference_batch = 2;
  CLI::App* reference_cmd = app.add_subcommand(
      "export-reference",
      "write a model, a batch and sinklab's logits/loss/gradients to safetensors for "
      "scripts/crosscheck_torch.py");
  add_common(reference_cmd, reference_args);
  reference_cmd->add_option("--out", reference_out, "output .safetensors file")->required();
  reference_cmd->add_option("--batch", reference_batch, "sequences in the batch (1 to 64)")
      ->check(count_in(1, 64, "a batch (a reference for the cross-check) of sequences"));
  std::string export_checkpoint, export_format = "safetensors";
  train::ExportOptions export_options;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "write a checkpoint for Hugging Face: its weights (safetensors) or a folder "
                "from_pretrained loads (hf)");
  export_cmd->add_option("checkpoint", export_checkpoint, "step_XXXXXXXX.h5")
      ->required()
      ->check(CLI::ExistingFile);
  export_cmd->add_option("--format", export_format,
                         "safetensors (the weights, Hugging Face names) or hf (config.json, "
                         "model.safetensors, tokenizer.json, ...)")
      ->check(CLI::IsMember({"safetensors", "hf"}));
  export_cmd->add_option("--out", export_options.out,
                         "output file (safetensors) or folder (hf); default beside the checkpoint");
  export_cmd->add_option("--tokenizer", export_options.tokenizer,
                         "hf: the tokenizer to write, as data.tokenizer takes it (default: the "
                         "run's)");
  std::string forward_model;
  train::ForwardOptions forward_options;
  CLI::App* forward_cmd = app.add_subcommand(
      "forward", "one forward pass over one sequence: its logits and loss to a safetensors file "
                 "(to compare with another implementation)");
  forward_cmd->add_option("model", forward_model, "step_XXXXXXXX.h5 or a Hugging Face folder")
      ->required();
  forward_cmd->add_option("--ids", forward_options.ids, "token ids, e.g. 464,3290,318")
      ->delimiter(',');
  forward_cmd->add_option("--text", forward_options.text, "text, encoded with the model's tokenizer");
  forward_cmd->add_option("--tokenizer", forward_options.tokenizer,
                          "another tokenizer, as data.tokenizer takes it");
  forward_cmd->add_option("--device", forward_options.device,
                          "cpu (default), cuda, or auto: cuda where a GPU is present");
  forward_cmd->add_option("--out", forward_options.out,
                          "safetensors file: ids (1, T), logits (1, T, V), loss ()");
  std::string generate_model;
  train::GenerateOptions generate_options;
  CLI::App* generate_cmd = app.add_subcommand(
      "generate", "sample text from a checkpoint or a Hugging Face model folder");
  generate_cmd->add_option("model", generate_model, "step_XXXXXXXX.h5 or a Hugging Face folder")
      ->required();
  generate_cmd->add_option("--prompt", generate_options.prompt, "text to continue");
  generate_cmd->add_option("--tokens", generate_options.tokens, "tokens to add (default 64)");
  generate_cmd->add_option("--temperature", generate_options.temperature,
                           "softmax temperature; 0 = greedy (default 1)");
  generate_cmd->add_option("--top-k", generate_options.top_k,
                           "draw from the k most likely tokens only; 0 = all (default)");
  generate_cmd->add_option("--seed", generate_options.seed, "seed of the draws (default 0)");
  generate_cmd->add_option("--device", generate_options.device,
                           "cpu (default), cuda, or auto: cuda where a GPU is present");
  generate_cmd->add_option("--tokenizer", generate_options.tokenizer,
                           "another tokenizer, as data.tokenizer takes it");
  train::ProbeOptions probe;
  std::string probe_checkpoint_path;
  int64_t scale_position = -1;
  CLI::App* probe_cmd = app.add_subcommand(
      "probe", "run validation batches through a checkpoint and print every sink metric per "
               "layer, optionally under the paper's interventions");
  probe_cmd->add_option("checkpoint", probe_checkpoint_path,
                        "step_XXXXXXXX.h5, or a Hugging Face model folder / .safetensors file "
                        "with its config.json")
      ->required();
  probe_cmd->add_option("--set", probe.overrides,
                        "override a key of the model's config, e.g. --set data.dir=data/gpt2 "
                        "for a Hugging Face model")
      ->take_all();
  probe_cmd->add_option("--batches", probe.batches, "validation batches (of the run's size)");
  probe_cmd->add_option("--device", probe.device,
                        "cpu (default), cuda, or auto: cuda where a GPU is present");
  const std::vector<CLI::Option*> measure_opts =
      train::add_probe_measure_options(*probe_cmd, probe, scale_position);
  std::string probe_plan_path;
  CLI::Option* plan_opt = probe_cmd->add_option(
      "--plan", probe_plan_path,
      "FILE: one probe a line (its measurement options, or 'none'), all on the checkpoint read "
      "once; --out is then the prefix of <prefix>_<i>.json, i the probe's place in the plan");
  for (CLI::Option* o : measure_opts) plan_opt->excludes(o);
  probe_cmd->add_option("--out", probe.out, "JSON file (default <checkpoint>.probe.json)");
  train::AttentionBenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench-attention", "time causal attention alone (forward, forward + backward) at a "
                         "model's shapes; scripts/bench_attention.sh adds PyTorch's SDPA");
  bench_cmd->add_option("--batch", bench.batch, "sequences (B)");
  bench_cmd->add_option("--seq", bench.seq, "sequence length (T)");
  bench_cmd->add_option("--heads", bench.heads, "attention heads (NH)");
  bench_cmd->add_option("--head-size", bench.head_size, "head size (HS)");
  bench_cmd->add_option("--iters", bench.iters, "timed calls");
  bench_cmd->add_option("--warmup", bench.warmup, "untimed calls first");
  bench_cmd->add_flag("!--separate", bench.packed,
                      "separate f32 q, k, v (ops::attention) instead of GPT-2's packed qkv");
  bench_cmd->add_flag("--sigmoid", bench.sigmoid, "sigmoid attention instead of softmax");
  bench_cmd->add_option("--isolate", bench.isolate, "isolated positions (the paper's "
                                                    "intervention)");
  bench_cmd->add_option("--device", bench.device, "cpu or cuda");
  bench_cmd->add_option("--precision", bench.precision, "bf16 or fp32");
  bench_cmd->add_option("--kernels", bench.kernels,
                        "own (sinklab's kernels) or auto (cuDNN's fused attention where it "
                        "applies)");
  std::string report_run, report_out;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "plots of every variant's metrics and an index.html (runs/<name>/report/)");
  report_cmd->add_option("run", report_run, "the run folder, e.g. runs/quickstart")
      ->required()
      ->check(CLI::ExistingDirectory);
  report_cmd->add_option("--out", report_out, "output folder (default <run>/report)");
  train::TokenizeOptions tokenize;
  CLI::App* tokenize_cmd = app.add_subcommand(
      "tokenize", "encode a file or string with a tokenizer (ids on stdout or into an llm.c "
                  "shard), or write the tokenizer as Hugging Face files");
  tokenize_cmd
      ->add_option("--tokenizer", tokenize.tokenizer,
                   "byte, gpt2, hf:<tokenizer.json or folder>, or a tokenizer file of prepare")
      ->required();
  tokenize_cmd->add_option("--file", tokenize.file, "text file to encode (its raw bytes)")
      ->check(CLI::ExistingFile);
  tokenize_cmd->add_option("--text", tokenize.text, "string to encode");
  tokenize_cmd->add_option("--out", tokenize.out,
                           "write the ids as an llm.c shard (uint16, or uint32 past 65535)");
  tokenize_cmd->add_option("--write-hf", tokenize.write_hf,
                           "folder: write tokenizer.json, tokenizer_config.json and "
                           "special_tokens_map.json for Hugging Face");
  tokenize_cmd->add_option("--model-max-length", tokenize.model_max_length,
                           "model_max_length in tokenizer_config.json (e.g. model.block_size)");
  // A first word that is no command (and no option) is named, with the commands there are;
  // CLI11 itself only says that a subcommand is required.
  if (argc > 1 && argv[1][0] != '-' && !is_command(app, argv[1])) {
    std::string commands;
    for (const CLI::App* sub : app.get_subcommands({})) commands += " " + sub->get_name();
    std::cerr << "sinklab: unknown command '" << argv[1] << "'\n  hint: the commands are:"
              << commands << " (sinklab <command> --help)\n";
    return 2;
  }
  CLI11_PARSE(app, argc, argv);
  try {
    train::select_local_gpu(train::launch_env_from_process());  // before CUDA starts
    train::register_backends();
    if (*train_cmd) return train::run_training(train_args, train_variants, false);
    if (*compare_cmd) return train::run_training(compare_args, {}, true);
    if (*prepare_cmd) {
      train::RunConfig config = train::load_config(prepare_args.config, prepare_args.overrides);
      train::prepare_dataset(config, std::cout);
      return 0;
    }
    if (*probe_cmd) {
      if (!probe_plan_path.empty()) {
        train::probe_plan(probe_checkpoint_path, train::read_probe_plan(probe_plan_path, probe),
                          probe.out, std::cout);
        return 0;
      }
      train::resolve_scale(probe, scale_position);
      train::probe_checkpoint(probe_checkpoint_path, probe, std::cout);
      return 0;
    }
    if (*report_cmd) return train::run_report(report_run, report_out, SINKLAB_SCRIPTS_DIR);
    if (*bench_cmd) {
      train::print_attention_bench(bench, train::bench_attention(bench), std::cout);
      return 0;
    }
    if (*tokenize_cmd) {
      train::run_tokenize(tokenize, std::cout);
      return 0;
    }
    if (*export_cmd) {
      export_options.format =
          export_format == "hf" ? train::ExportFormat::HuggingFace : train::ExportFormat::Safetensors;
      const std::string out = train::export_checkpoint(export_checkpoint, export_options);
      std::cout << "wrote " << out << "\n";
      return 0;
    }
    if (*forward_cmd) {
      const train::ForwardOutput out = train::forward_to_file(forward_model, forward_options);
      std::cout << out.ids.size() << " tokens, loss " << out.loss
                << (forward_options.out.empty() ? "" : ", wrote " + forward_options.out) << "\n";
      return 0;
    }
    if (*generate_cmd) {
      std::cout << train::generate(generate_model, generate_options).text << "\n";
      return 0;
    }
    if (*reference_cmd) {
      train::RunConfig config = train::load_config(reference_args.config, reference_args.overrides);
      train::export_reference(config, reference_batch, reference_out);
      std::cout << "wrote " << reference_out << "\n";
      return 0;
    }
  } catch (const Error& e) {
    std::cerr << "sinklab: " << e.what() << "\n";
    return e.kind() == ErrorKind::Config ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sinklab: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
