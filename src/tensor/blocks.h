// Byte layouts of ggml's quantized blocks, exactly as they sit in GGUF files and in memory.
// Shared by the reference code here and the backend's fast kernels. Scales stored as IEEE half
// are kept as raw uint16_t bits (convert with fp16_to_f32) so the structs are trivially copyable
// and have no padding; the static_asserts pin every size to the file format.
#pragma once

#include <cstdint>

namespace tf {

inline constexpr int kQK = 32;          // elements per legacy block (Q4_0 ... Q8_1)
inline constexpr int kQK_K = 256;       // elements per K-quant super-block
inline constexpr int kKScaleSize = 12;  // bytes of packed 6-bit scales/mins in Q4_K / Q5_K

// x = d * (q - 8), q in 0..15. Element j is the low nibble of qs[j], element j+16 the high one.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..15, same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// x = d * (q - 16), q in 0..31: low 4 bits as in Q4_0, bit 4 of element j is bit j of qh
// (qh is a little-endian uint32 stored as bytes because the block is only 2-byte aligned).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..31, bits as in Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// Activation format for Q4_1 / Q5_1: x = d * q, plus s = d * sum(q) so the weights' offset m
// contributes m * s without touching the quants.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

// 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q in 0..3.
// In each 128-element half h, qs[32h + l] holds 2-bit q for elements 128h + 32k + l at bit
// 2k (k = 0..3).
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (s - 32) * (q - 4 * !hbit), 6-bit s packed in 12 bytes.
// Low 2 bits of q laid out as in Q2_K; the high bit of element 128h + 32k + l is bit 4h + k of
// hmask[l].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, 6-bit sc/m packed in 12 bytes, q in 0..15.
// Chunk c (64 elements) uses qs[32c + l]: low nibble -> element 64c + l, high -> 64c + 32 + l.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
// As Q4_K with a fifth bit: bit 2c of qh[l] for element 64c + l, bit 2c+1 for 64c + 32 + l.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q in 0..63 split into 4 low bits (ql) and
// 2 high bits (qh); see dequantize for the interleaving.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
// Activation format for the K types: float scale, and per-16 sums of q for the mins terms.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Unpacks the j-th (0..7) 6-bit scale and min of a Q4_K / Q5_K block. The first four pairs sit
// in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); the last four keep their low nibbles
// in bytes 8..11 and their top 2 bits in the spare high bits of bytes 0..7.
inline void k_scale_min(const uint8_t* s, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = uint8_t((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *m = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// The writers' side of the Q4_K / Q5_K layouts, shared by every quantizer (the tensor layer's
// direct one and the tools' scale search). The inverse of k_scale_min: 8 scales and 8 mins
// (6 bits each) into 12 bytes.
inline void pack_k_scale_min(const uint8_t sc[8], const uint8_t m[8], uint8_t out[kKScaleSize]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = uint8_t(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}
// 256 codes 0..15 into Q4_K's nibbles: chunk c of 64 elements keeps its first 32 in the low
// nibbles of qs[32c..32c+31] and the next 32 in the high nibbles.
inline void pack_q4_k_codes(const uint8_t q[kQK_K], uint8_t qs[kQK_K / 2]) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = uint8_t(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}
// 256 codes 0..31 into Q5_K: low nibbles as Q4_K, the fifth bits of chunk c's two halves at
// bits 2c and 2c + 1 of qh[l].
inline void pack_q5_k_codes(const uint8_t q[kQK_K], uint8_t qs[kQK_K / 2], uint8_t qh[kQK_K / 8]) {
  for (int l = 0; l < kQK_K / 8; ++l) qh[l] = 0;
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      qs[32 * c + l] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
      qh[l] |= uint8_t(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
    }
}

// Unpacks the 16 6-bit Q3_K scales (still biased by +32). Scale i keeps its low nibble in
// byte i % 8 (low nibble for i < 8, high for i >= 8) and its top 2 bits in byte 8 + i % 4 at
// bit 2 * (i / 4).
inline void q3k_scales(const uint8_t* s, uint8_t out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = uint8_t(lo | (hi << 4));
  }
}

}  // namespace tf
