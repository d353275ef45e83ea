// CRC-32C (Castagnoli; RFC 3720, iSCSI): the checksum of TFRecord framing, so of TensorBoard
// event files. Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF; one
// 256-entry table, one byte per step. Check value: crc32c("123456789") = 0xE3069283.
#pragma once
#include <cstdint>
#include <string_view>

namespace sinklab::train {

uint32_t crc32c(std::string_view bytes);

// TFRecord's masked form of a CRC, stored in the file so that a CRC over data that holds CRCs
// stays well distributed: rotate right by 15 bits, add 0xa282ead8 (mod 2^32).
uint32_t mask_crc32c(uint32_t crc);

}  // namespace sinklab::train
