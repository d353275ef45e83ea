// Hugging Face interop on the CPU: config.json fields both ways, the state dict (GPT-2's Conv1D
// transposes, tied heads, the original port's names, saved buffers, F16 files), refusals that
// name the field or tensor, and a model exported as a folder and read back (probe, generate,
// --init-from) computing exactly what the checkpoint computes. The proof against transformers
// itself runs on the GPU machine (scripts/interop_check.py, docs/INTEROP.md).
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/helpers.h"
#include "tests/train/train_test_util.h"
#include "train/commands/generate.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/checkpoint.h"
#include "train/io/export.h"
#include "train/io/hf_config.h"
#include "train/io/hf_modeling_source.h"
#include "train/io/hf_weights.h"
#include "train/io/json_text.h"
#include "train/io/model_source.h"
#include "train/optimizer.h"
#include "train/sampler.h"

using namespace sinklab;
using namespace sinklab::train;
using sinklab::test::contains;
using sinklab::test::error_message;
using sinklab::test::TempDir;
namespace fs = std::filesystem;

namespace {

ModelSection model_of(Arch arch) {
  ModelSection m = test::tiny_model(arch, AttnOutputNorm::None);
  m.n_embd = 16;  // head size 8 (RoPE needs an even one)
  m.block_size = 8;
  m.vocab_size = 37;
  return m;
}

// A checkpoint of a freshly initialised model with `config` (the run's stored config).
std::string write_checkpoint(const TempDir& dir, const RunConfig& config) {
  GPT model(config.model, config.run.seed);
  AdamW optimizer(model.params(), config.optim);
  TrainState state;
  state.step = 7;
  state.config_yaml = to_yaml(config);
  const std::string path = dir.file("step_00000007.h5");
  save_checkpoint(path, model.params(), optimizer, state);
  return path;
}

RunConfig byte_run(Arch arch) {
  RunConfig config;
  config.model = model_of(arch);
  config.model.vocab_size = 256;
  config.data.tokenizer = "byte";
  validate(config);
  return config;
}

std::vector<double> logits_of(const GPT& model, const std::vector<int32_t>& ids) {
  autograd::NoGradGuard no_grad;
  return model.forward(Tensor::from_ints(ids, {1, static_cast<int64_t>(ids.size())}), Tensor())
      .logits.to_doubles();
}

// config.json as yaml-cpp reads it (JSON is YAML flow syntax).
YAML::Node written_config(const ModelSection& m, const HfSpecialTokens& special = {}) {
  return YAML::Load(hf_config_json(m, special));
}

std::string write_json(const TempDir& dir, const std::string& text) {
  return dir.write("config.json", text);
}

}  // namespace

TEST_CASE("json_string escapes quotes, backslashes and control bytes", "[hf]") {
  REQUIRE(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  REQUIRE(json_string("\n\t\x01") == "\"\\n\\t\\u0001\"");
  REQUIRE(json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");  // UTF-8 passes through
  REQUIRE(YAML::Load(json_string("x\x1fy")).as<std::string>() == "x\x1fy");
  REQUIRE_THROWS_AS(json_number(NAN), ValueError);
}

TEST_CASE("config.json for GPT-2 holds GPT2Config's fields", "[hf]") {
  ModelSection m = model_of(Arch::Gpt2);
  m.tie_embeddings = false;
  const YAML::Node c = written_config(m, {50256, 50256});
  REQUIRE(c["architectures"][0].as<std::string>() == "GPT2LMHeadModel");
  REQUIRE(c["model_type"].as<std::string>() == "gpt2");
  REQUIRE(c["n_embd"].as<int64_t>() == 16);
  REQUIRE(c["n_layer"].as<int64_t>() == 2);
  REQUIRE(c["n_head"].as<int64_t>() == 2);
  REQUIRE(c["n_positions"].as<int64_t>() == 8);
  REQUIRE(c["vocab_size"].as<int64_t>() == 37);
  REQUIRE(c["n_inner"].as<int64_t>() == 64);  // 4C
  REQUIRE(c["activation_function"].as<std::string>() == "gelu_new");  // the tanh GELU
  REQUIRE(c["layer_norm_epsilon"].as<double>() == 1e-5);
  REQUIRE(c["scale_attn_weights"].as<bool>());
  REQUIRE_FALSE(c["scale_attn_by_inverse_layer_idx"].as<bool>());
  REQUIRE_FALSE(c["tie_word_embeddings"].as<bool>());
  REQUIRE(c["resid_pdrop"].as<double>() == 0.0);
  REQUIRE(c["eos_token_id"].as<int64_t>() == 50256);
  REQUIRE(c["bos_token_id"].as<int64_t>() == 50256);
}

TEST_CASE("config.json for LLaMA holds LlamaConfig's fields, RoPE theta for transformers 4 and 5",
          "[hf]") {
  ModelSection m = model_of(Arch::Llama);
  m.rope_theta = 500000.0;
  m.norm_eps = 1e-5;
  const YAML::Node c = written_config(m);
  REQUIRE(c["architectures"][0].as<std::string>() == "LlamaForCausalLM");
  REQUIRE(c["model_type"].as<std::string>() == "llama");
  REQUIRE(c["hidden_size"].as<int64_t>() == 16);
  REQUIRE(c["intermediate_size"].as<int64_t>() == GPT::resolved_ffn_width(m));
  REQUIRE(c["num_hidden_layers"].as<int64_t>() == 2);
  REQUIRE(c["num_attention_heads"].as<int64_t>() == 2);
  REQUIRE(c["num_key_value_heads"].as<int64_t>() == 2);
  REQUIRE(c["head_dim"].as<int64_t>() == 8);
  REQUIRE(c["hidden_act"].as<std::string>() == "silu");
  REQUIRE(c["max_position_embeddings"].as<int64_t>() == 8);
  REQUIRE(c["rms_norm_eps"].as<double>() == 1e-5);
  REQUIRE(c["rope_theta"].as<double>() == 500000.0);
  REQUIRE(c["rope_parameters"]["rope_type"].as<std::string>() == "default");
  REQUIRE(c["rope_parameters"]["rope_theta"].as<double>() == 500000.0);
  REQUIRE(c["rope_scaling"].IsNull());
  REQUIRE_FALSE(c["attention_bias"].as<bool>());
  REQUIRE_FALSE(c["mlp_bias"].as<bool>());
  REQUIRE(c["tie_word_embeddings"].as<bool>());
  REQUIRE(c["eos_token_id"].IsNull());
}

TEST_CASE("config.json reads back to the same model", "[hf]") {
  TempDir dir;
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    ModelSection m = model_of(arch);
    m.tie_embeddings = arch == Arch::Gpt2;
    m.norm_eps = 3e-6;
    m.rope_theta = 12345.0;
    const ModelSection back = model_from_hf_config(write_json(dir, hf_config_json(m, {})));
    INFO(choice_text(arch));
    REQUIRE(back.arch == arch);
    REQUIRE(back.n_layer == m.n_layer);
    REQUIRE(back.n_head == m.n_head);
    REQUIRE(back.n_embd == m.n_embd);
    REQUIRE(back.block_size == m.block_size);
    REQUIRE(back.vocab_size == m.vocab_size);
    REQUIRE(GPT::resolved_ffn_width(back) == GPT::resolved_ffn_width(m));
    REQUIRE(back.norm_eps == 3e-6);
    REQUIRE(back.tie_embeddings == m.tie_embeddings);
    if (arch == Arch::Llama) REQUIRE(back.rope_theta == 12345.0);
    REQUIRE(GPT::parameter_specs(back).size() == GPT::parameter_specs(m).size());
  }
}

TEST_CASE("variants no stock class computes get SinklabConfig; amplify is refused", "[hf]") {
  TempDir dir;
  ModelSection headwise = model_of(Arch::Gpt2);
  headwise.attn_output_norm = AttnOutputNorm::HeadwiseRmsNorm;
  headwise.gamma_shared = true;
  headwise.isolate_positions = {0, 3};
  headwise.isolate_layers = {1};
  REQUIRE(needs_sinklab_modeling(headwise));
  REQUIRE_FALSE(needs_sinklab_modeling(model_of(Arch::Llama)));
  const YAML::Node c = written_config(headwise);
  REQUIRE(c["model_type"].as<std::string>() == "sinklab");
  REQUIRE(c["architectures"][0].as<std::string>() == "SinklabForCausalLM");
  REQUIRE(c["auto_map"]["AutoModelForCausalLM"].as<std::string>() ==
          "modeling_sinklab.SinklabForCausalLM");
  REQUIRE(c["auto_map"]["AutoConfig"].as<std::string>() == "modeling_sinklab.SinklabConfig");
  REQUIRE(c["attn_output_norm"].as<std::string>() == "headwise_rmsnorm");
  REQUIRE(c["gamma_shared"].as<bool>());
  REQUIRE(c["isolate_positions"].as<std::vector<int64_t>>() == std::vector<int64_t>{0, 3});
  REQUIRE(c["ffn_hidden"].as<int64_t>() == 64);
  REQUIRE(c["norm_eps"].as<double>() == 1e-5);
  const ModelSection back = model_from_hf_config(write_json(dir, hf_config_json(headwise, {})));
  REQUIRE(back.arch == Arch::Gpt2);
  REQUIRE(back.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm);
  REQUIRE(back.gamma_shared);
  REQUIRE(back.isolate_positions == headwise.isolate_positions);
  REQUIRE(back.isolate_layers == headwise.isolate_layers);
  ModelSection sigmoid = model_of(Arch::Llama);
  sigmoid.attention = AttentionKind::Sigmoid;
  REQUIRE(model_from_hf_config(write_json(dir, hf_config_json(sigmoid, {}))).attention ==
          AttentionKind::Sigmoid);
  ModelSection amplify = model_of(Arch::Gpt2);
  amplify.amplify_position = 0;
  amplify.amplify_lambda = 2;
  REQUIRE(contains(error_message<ConfigError>([&] { hf_config_json(amplify, {}); }),
                   "model.amplify_position"));
}

TEST_CASE("configs sinklab would compute differently are refused on import, naming the field",
          "[hf]") {
  TempDir dir;
  const std::string llama = hf_config_json(model_of(Arch::Llama), {});
  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = llama;
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    return write_json(dir, text.replace(at, from.size(), to));
  };
  REQUIRE(contains(error_message<ConfigError>([&] {
                     model_from_hf_config(with("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1"));
                   }),
                   "num_key_value_heads"));
  REQUIRE(contains(error_message<ConfigError>([&] {
                     model_from_hf_config(
                         with("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0}"));
                   }),
                   "rope_scaling"));
  REQUIRE(contains(error_message<ConfigError>([&] {
                     model_from_hf_config(with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""));
                   }),
                   "hidden_act"));
  REQUIRE(contains(error_message<ConfigError>([&] {
                     model_from_hf_config(with("\"model_type\": \"llama\"", "\"model_type\": \"bert\""));
                   }),
                   "model_type is bert"));
  REQUIRE(contains(error_message<ConfigError>([&] {
                     model_from_hf_config(with("\"hidden_size\": 16,", ""));
                   }),
                   "has no field hidden_size"));
  const std::string gpt2 = hf_config_json(model_of(Arch::Gpt2), {});
  std::string relu = gpt2;
  relu.replace(relu.find("gelu_new"), 8, "relu");
  REQUIRE(contains(error_message<ConfigError>([&] { model_from_hf_config(write_json(dir, relu)); }),
                   "activation_function is relu"));
  // transformers' own GPT-2 config leaves n_inner null: 4C.
  std::string null_inner = gpt2;
  null_inner.replace(null_inner.find("\"n_inner\": 64"), 13, "\"n_inner\": null");
  REQUIRE(GPT::resolved_ffn_width(model_from_hf_config(write_json(dir, null_inner))) == 64);
}

TEST_CASE("the state dict: GPT-2's Conv1D matrices are transposed both ways", "[hf]") {
  const ModelSection m = model_of(Arch::Gpt2);
  GPT model(m, 5);
  NamedTensors params;
  for (const Param& p : model.params().params()) params.push_back({p.spec.name, p.value});
  const NamedTensors hf = to_hf_state_dict(params);
  std::map<std::string, Tensor> by_name(hf.begin(), hf.end());
  REQUIRE(by_name.at("transformer.h.0.attn.c_attn.weight").shape() == Shape{16, 48});  // (in, out)
  REQUIRE(by_name.at("transformer.h.1.mlp.c_fc.weight").shape() == Shape{16, 64});
  REQUIRE(by_name.at("transformer.h.1.mlp.c_proj.weight").shape() == Shape{64, 16});
  REQUIRE(by_name.at("transformer.h.0.attn.c_attn.bias").shape() == Shape{48});
  REQUIRE_FALSE(by_name.count("lm_head.weight"));  // tied
  REQUIRE(by_name.at("transformer.h.0.attn.c_attn.weight").to_doubles() ==
          model.params()["transformer.h.0.attn.c_attn.weight"].transpose_view(0, 1).to_doubles());
  const NamedTensors back = from_hf_state_dict(by_name, m, "test");
  REQUIRE(back.size() == params.size());
  for (size_t i = 0; i < back.size(); ++i) {
    INFO(back[i].first);
    REQUIRE(back[i].first == params[i].first);
    REQUIRE(back[i].second.to_doubles() == params[i].second.to_doubles());
  }
}

TEST_CASE("the state dict: what other writers leave is read", "[hf]") {
  const ModelSection m = model_of(Arch::Gpt2);
  GPT model(m, 5);
  NamedTensors params;
  for (const Param& p : model.params().params()) params.push_back({p.spec.name, p.value});
  std::map<std::string, Tensor> original_port;  // OpenAI's port: no "transformer." prefix
  for (auto& [name, value] : to_hf_state_dict(params))
    original_port[name.substr(std::strlen("transformer."))] = value;
  original_port["h.0.attn.bias"] = Tensor::full({1, 1, 8, 8}, 1.0);  // older transformers' mask buffer
  original_port["lm_head.weight"] = model.params()["transformer.wte.weight"];  // tied, stored
  const NamedTensors back = from_hf_state_dict(original_port, m, "test");
  REQUIRE(back.front().first == "transformer.wte.weight");
  REQUIRE(back.front().second.to_doubles() ==
          model.params()["transformer.wte.weight"].to_doubles());
  // A stored head that is not the embedding contradicts tie_word_embeddings: true.
  original_port["lm_head.weight"] = Tensor::zeros({37, 16});
  REQUIRE(contains(error_message<ConfigError>([&] { from_hf_state_dict(original_port, m, "f"); }),
                   "lm_head.weight differs"));
}

TEST_CASE("the state dict: a missing, unknown or misshapen tensor is named", "[hf]") {
  const ModelSection m = model_of(Arch::Llama);
  GPT model(m, 5);
  std::map<std::string, Tensor> hf;
  for (const Param& p : model.params().params()) hf[p.spec.name] = p.value;
  auto missing = hf;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  REQUIRE(contains(error_message<ConfigError>([&] { from_hf_state_dict(missing, m, "f.st"); }),
                   "has no tensor model.layers.1.mlp.up_proj.weight"));
  auto unknown = hf;
  unknown["model.layers.0.self_attn.q_norm.weight"] = Tensor::full({8}, 1.0);
  REQUIRE(contains(error_message<ConfigError>([&] { from_hf_state_dict(unknown, m, "f.st"); }),
                   "holds tensor model.layers.0.self_attn.q_norm.weight (8)"));
  auto misshapen = hf;
  misshapen["model.layers.0.self_attn.k_proj.weight"] = Tensor::zeros({8, 16});
  const std::string message =
      error_message<ConfigError>([&] { from_hf_state_dict(misshapen, m, "f.st"); });
  REQUIRE(contains(message, "model.layers.0.self_attn.k_proj.weight has shape (8, 16)"));
  REQUIRE(contains(message, "needs (16, 16)"));
  auto buffer = hf;  // LLaMA's rotary buffer is skipped
  buffer["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor::full({4}, 1.0);
  REQUIRE(from_hf_state_dict(buffer, m, "f.st").size() == hf.size());
}

TEST_CASE("safetensors F16 values are widened to f32 exactly", "[hf]") {
  TempDir dir;
  // 1, -2, the smallest subnormal 2^-24, +inf, 65504 (the largest finite), -0
  const uint16_t halves[6] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0x7BFF, 0x8000};
  std::string header = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}";
  while (header.size() % 8) header += ' ';
  const uint64_t n = header.size();
  std::ofstream out(dir.file("h.safetensors"), std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out.write(reinterpret_cast<const char*>(halves), sizeof halves);
  out.close();
  const Tensor w = read_safetensors(dir.file("h.safetensors")).at("w");
  REQUIRE(w.dtype() == DType::F32);
  REQUIRE(w.shape() == Shape{2, 3});
  const std::vector<double> v = w.to_doubles();
  REQUIRE(v[0] == 1.0);
  REQUIRE(v[1] == -2.0);
  REQUIRE(v[2] == std::ldexp(1.0, -24));
  REQUIRE(std::isinf(v[3]));
  REQUIRE(v[4] == 65504.0);
  REQUIRE((v[5] == 0.0 && std::signbit(v[5])));
}

TEST_CASE("a checkpoint exported as a Hugging Face folder reads back to the same model", "[hf]") {
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    INFO(choice_text(arch));
    TempDir dir;
    const RunConfig config = byte_run(arch);
    const std::string checkpoint = write_checkpoint(dir, config);
    const std::string folder =
        export_checkpoint(checkpoint, {ExportFormat::HuggingFace, dir.file("hf"), ""});
    for (const char* file : {"config.json", "generation_config.json", "model.safetensors",
                             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      REQUIRE(fs::exists(fs::path(folder) / file));
    // The folder's tokenizer is the run's (byte): read back as the folder's data.tokenizer.
    const std::string text = "caf\xc3\xa9 \x01";
    std::vector<int32_t> expected;
    for (unsigned char c : text) expected.push_back(c);
    REQUIRE(open_data_tokenizer(load_model_source(folder).config.data)->encode(text) == expected);
    const ModelSource from_checkpoint = load_model_source(checkpoint);
    const ModelSource from_folder = load_model_source(folder);
    REQUIRE(from_folder.kind == ModelSourceKind::HuggingFace);
    REQUIRE(from_checkpoint.step == 7);
    GPT a(from_checkpoint.config.model, 1), b(from_folder.config.model, 2);
    load_weights(a.params(), from_checkpoint.params, checkpoint);
    load_weights(b.params(), from_folder.params, folder);
    const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
    REQUIRE(logits_of(a, ids) == logits_of(b, ids));  // the same numbers, bit for bit
    // The .safetensors file alone, with the config.json of its folder, is the same model.
    const ModelSource from_file = load_model_source(folder + "/model.safetensors");
    REQUIRE(from_file.params.size() == from_folder.params.size());
  }
}

TEST_CASE("export --format hf ships modeling_sinklab.py with a head-wise model", "[hf]") {
  TempDir dir;
  RunConfig config = byte_run(Arch::Llama);
  config.model.attn_output_norm = AttnOutputNorm::HeadwiseRmsNorm;
  const std::string checkpoint = write_checkpoint(dir, config);
  const std::string folder =
      export_checkpoint(checkpoint, {ExportFormat::HuggingFace, dir.file("hf"), ""});
  std::ifstream shipped(fs::path(folder) / "modeling_sinklab.py");
  const std::string text((std::istreambuf_iterator<char>(shipped)), {});
  REQUIRE(text == std::string(sinklab_modeling_py()));
  REQUIRE(contains(text, "class SinklabForCausalLM"));
  const ModelSource source = load_model_source(folder);
  GPT a(config.model, 1), b(source.config.model, 2);
  load_weights(a.params(), load_model_source(checkpoint).params, checkpoint);
  load_weights(b.params(), source.params, folder);
  REQUIRE(logits_of(a, {5, 4, 3, 2}) == logits_of(b, {5, 4, 3, 2}));
  // A plain model needs no model file.
  const std::string plain = write_checkpoint(dir, byte_run(Arch::Gpt2));
  REQUIRE_FALSE(fs::exists(
      fs::path(export_checkpoint(plain, {ExportFormat::HuggingFace, dir.file("plain"), ""})) /
      "modeling_sinklab.py"));
}

TEST_CASE("export --format hf refuses amplify before writing anything", "[hf]") {
  TempDir dir;
  RunConfig config = byte_run(Arch::Gpt2);
  config.model.amplify_position = 1;
  config.model.amplify_lambda = 3;
  const std::string checkpoint = write_checkpoint(dir, config);
  REQUIRE(contains(error_message<ConfigError>([&] {
                     export_checkpoint(checkpoint, {ExportFormat::HuggingFace, dir.file("hf"), ""});
                   }),
                   "model.amplify_position"));
  REQUIRE_FALSE(fs::exists(dir.file("hf")));
}

TEST_CASE("load_weights names a missing or misshapen parameter and copies nothing then", "[hf]") {
  GPT model(model_of(Arch::Llama), 1);
  const std::vector<double> before = model.params().flat_values().to_doubles();
  NamedTensors weights;
  for (const Param& p : model.params().params())
    weights.push_back({p.spec.name, Tensor::zeros(p.spec.shape)});
  NamedTensors short_list(weights.begin(), weights.end() - 1);
  REQUIRE(contains(error_message<ConfigError>([&] { load_weights(model.params(), short_list, "x"); }),
                   "x has no " + weights.back().first));
  weights[1].second = Tensor::zeros({3});
  REQUIRE(contains(error_message<ConfigError>([&] { load_weights(model.params(), weights, "x"); }),
                   weights[1].first + " has shape (3)"));
  REQUIRE(model.params().flat_values().to_doubles() == before);
}

TEST_CASE("sample_from_logits: greedy, top-k with ties, the vocabulary limit", "[hf][sample]") {
  const std::vector<double> logits = {0.0, 3.0, 1.0, 3.0, -1.0, 10.0};
  SamplingOptions greedy;
  greedy.temperature = 0;
  REQUIRE(sample_from_logits(logits, greedy, 0.5) == 5);
  greedy.vocab_limit = 5;  // id 5 is padding past the tokenizer
  REQUIRE(sample_from_logits(logits, greedy, 0.5) == 1);  // the first largest
  SamplingOptions top2;
  top2.top_k = 2;
  top2.vocab_limit = 5;  // logits 0, 3, 1, 3, -1: the two 3s, equally likely
  for (double u : {0.0, 0.25, 0.49}) REQUIRE(sample_from_logits(logits, top2, u) == 1);
  for (double u : {0.51, 0.75, 0.999999}) REQUIRE(sample_from_logits(logits, top2, u) == 3);
  SamplingOptions top1;  // ties with the k-th are kept, as transformers' top-k does
  top1.top_k = 1;
  top1.vocab_limit = 5;
  REQUIRE(sample_from_logits(logits, top1, 0.9) == 3);
  SamplingOptions all;  // temperature 1 over all six: u just below 1 is the last id
  REQUIRE(sample_from_logits(logits, all, 0.999999) == 5);
  REQUIRE(sample_from_logits(logits, all, 0.0) == 0);
}

TEST_CASE("generate reads a checkpoint or its Hugging Face export alike", "[hf][sample]") {
  TempDir dir;
  const RunConfig config = byte_run(Arch::Llama);
  const std::string checkpoint = write_checkpoint(dir, config);
  const std::string folder =
      export_checkpoint(checkpoint, {ExportFormat::HuggingFace, dir.file("hf"), ""});
  GenerateOptions options;
  options.prompt = "The sea";
  options.tokens = 12;
  options.top_k = 5;
  options.seed = 3;
  options.tokenizer = "byte";  // the checkpoint's data.tokenizer is byte already; the folder's is
                               // its tokenizer.json: the same ids
  const Generation a = generate(checkpoint, options);
  const Generation b = generate(folder, options);
  REQUIRE(a.prompt_ids == std::vector<int32_t>{'T', 'h', 'e', ' ', 's', 'e', 'a'});
  REQUIRE(a.ids.size() == 7 + 12);
  REQUIRE(a.ids == b.ids);
  REQUIRE(a.text.substr(0, 7) == "The sea");
  options.seed = 4;
  REQUIRE(generate(checkpoint, options).ids != a.ids);  // the seed draws
  options.temperature = -1;
  REQUIRE(contains(error_message<ConfigError>([&] { generate(checkpoint, options); }),
                   "--temperature"));
}
