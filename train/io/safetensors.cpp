#include "train/io/safetensors.h"

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train/io/atomic_file.h"
#include "train/io/json_text.h"

namespace sinklab::train {

namespace {

const char* st_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
  }
  return "?";
}

DType from_st_dtype(const std::string& s, const std::string& path) {
  if (s == "F32") return DType::F32;
  if (s == "F64") return DType::F64;
  if (s == "BF16") return DType::BF16;
  if (s == "I32") return DType::I32;
  if (s == "F16") return DType::F32;  // widened on read (Hugging Face checkpoints often hold F16)
  SINKLAB_FAIL(IOError, path << ": unsupported safetensors dtype " << s,
               "sinklab reads F32, F64, F16, BF16 and I32");
}

// IEEE 754 binary16 -> binary32, exactly (subnormals, infinities and NaN included).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::ostringstream header;
  header << "{";
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin()) header << ",";
      header << json_string(it->first) << ":" << json_string(it->second);
    }
    header << "}";
    first = false;
  }
  uint64_t offset = 0;
  std::vector<Tensor> host;
  for (const auto& [name, t] : tensors) {
    Tensor h = t.to_device(Device::cpu()).contiguous_or_self();
    const uint64_t bytes = h.numel() * dtype_size(h.dtype());
    header << (first ? "" : ",") << json_string(name) << ":{\"dtype\":\"" << st_dtype(h.dtype())
           << "\",\"shape\":[";
    for (size_t i = 0; i < h.dim(); ++i) header << (i ? "," : "") << h.shape()[i];
    header << "],\"data_offsets\":[" << offset << "," << offset + bytes << "]}";
    offset += bytes;
    first = false;
    host.push_back(h);
  }
  header << "}";
  std::string text = header.str();
  while (text.size() % 8) text += ' ';  // align the data
  AtomicFile file(path);
  const uint64_t n = text.size();
  file.write(&n, 8);
  file.write(text.data(), n);
  for (const Tensor& h : host) file.write(h.raw_data(), h.numel() * dtype_size(h.dtype()));
  file.commit();
}

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SINKLAB_CHECK(in.good(), IOError, "cannot open " << path, "check the path");
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  const uint64_t file_size = std::filesystem::file_size(path);
  SINKLAB_CHECK(in.good() && n > 1 && 8 + n <= file_size, IOError,
                path << ": bad safetensors header length " << n,
                "the file is truncated or not a safetensors file");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  YAML::Node header;
  try {
    header = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError, path << ": bad safetensors header: " << e.what(),
                 "the file is corrupt");
  }
  std::map<std::string, Tensor> out;
  for (const auto& entry : header) {
    const std::string name = entry.first.as<std::string>();
    if (name == "__metadata__") continue;
    const YAML::Node& info = entry.second;
    const std::string st_type = info["dtype"].as<std::string>();
    DType dtype = from_st_dtype(st_type, path);
    const uint64_t element_bytes = st_type == "F16" ? 2 : dtype_size(dtype);
    Shape shape;
    for (const auto& d : info["shape"]) shape.push_back(d.as<int64_t>());
    const uint64_t begin = info["data_offsets"][0].as<uint64_t>();
    const uint64_t end = info["data_offsets"][1].as<uint64_t>();
    Tensor t = Tensor::empty(shape, dtype);
    SINKLAB_CHECK(end >= begin && end - begin == t.numel() * element_bytes && 8 + n + end <= file_size,
                  IOError, path << ": tensor " << name << " has inconsistent offsets",
                  "the file is truncated or corrupt");
    in.seekg(static_cast<std::streamoff>(8 + n + begin));
    if (st_type == "F16") {
      std::vector<uint16_t> halves(t.numel());
      in.read(reinterpret_cast<char*>(halves.data()), static_cast<std::streamsize>(end - begin));
      float* values = static_cast<float*>(t.raw_data());
      for (size_t i = 0; i < halves.size(); ++i) values[i] = half_to_float(halves[i]);
    } else {
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(end - begin));
    }
    SINKLAB_CHECK(in.good(), IOError, path << ": tensor " << name << " could not be read",
                  "the file is truncated or unreadable");
    out[name] = t;
  }
  return out;
}

}  // namespace sinklab::train
