// Logits -> next token. The chain follows llama.cpp's default order:
//   penalties -> top-k -> top-p -> min-p -> temperature -> draw
// with temperature <= 0 meaning greedy (argmax after penalties). A fixed seed makes runs
// reproducible: the generator is owned by the sampler and advanced once per draw.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace tf {

struct SamplingParams {
  float temperature = 0.8f;
  int32_t top_k = 40;       // <= 0: disabled
  float top_p = 0.95f;      // >= 1: disabled
  float min_p = 0.05f;      // <= 0: disabled
  float repeat_penalty = 1.0f;    // 1: disabled
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t penalty_last_n = 64;    // how many recent tokens the penalties look at; -1 = all
  uint64_t seed = 0xFFFFFFFFu;    // 0xFFFFFFFF = random seed from the OS

  // Throws tf::Error for out-of-range values (NaN, negative temperature handled as greedy).
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);

  // Picks a token from raw logits (n_vocab of them). Does not record it: call accept().
  int32_t sample(const float* logits, int64_t n_vocab);
  // Records a token as generated (or as prompt context) for the penalties.
  void accept(int32_t token);
  void reset();
  uint64_t seed() const { return seed_; }

 private:
  struct Cand {
    int32_t id;
    float logit;
    float p;
  };
  void apply_penalties(std::vector<Cand>& c) const;

  SamplingParams p_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::vector<Cand> cands_;  // reused between calls
};

// Index of the largest value (the first one on ties).
int32_t argmax(const float* x, int64_t n);

// log(softmax(x))[i] over all n values, computed in float like llama.cpp's server reports it.
void log_softmax(const float* x, int64_t n, std::vector<float>& out);

}  // namespace tf
