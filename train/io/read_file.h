// Whole files read into memory, with errors that name the file, what it is for and what to do.
#pragma once
#include <string>

namespace sinklab::train {

// The bytes of `path`. Throws IOError "<path>: <what> not found" with `hint` when it is missing
// or not a regular file, and one naming it when it cannot be read.
std::string read_file(const std::string& path, const std::string& what, const std::string& hint);

}  // namespace sinklab::train
