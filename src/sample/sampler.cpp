#include "sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "util/error.h"

namespace tf {

void SamplingParams::validate() const {
  auto bad = [](float v) { return std::isnan(v) || std::isinf(v); };
  if (bad(temperature)) throw Error("temperature must be a finite number");
  if (bad(top_p) || top_p < 0.f) throw Error("top-p must be in [0, 1]");
  if (bad(min_p) || min_p > 1.f) throw Error("min-p must be at most 1");
  if (bad(repeat_penalty) || repeat_penalty <= 0.f) throw Error("repeat penalty must be > 0");
  if (bad(frequency_penalty) || bad(presence_penalty)) throw Error("penalties must be finite");
  if (penalty_last_n < -1) throw Error("penalty window must be >= -1");
}

Sampler::Sampler(const SamplingParams& p) : p_(p) {
  p_.validate();
  seed_ = p.seed == 0xFFFFFFFFu ? std::random_device{}() : p.seed;
  rng_.seed(seed_);
}

void Sampler::reset() {
  recent_.clear();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (p_.penalty_last_n == 0) return;
  recent_.push_back(token);
  if (p_.penalty_last_n > 0 && recent_.size() > size_t(p_.penalty_last_n)) recent_.pop_front();
}

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

void log_softmax(const float* x, int64_t n, std::vector<float>& out) {
  out.resize(size_t(n));
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i] - mx));
  const float lse = float(std::log(sum));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = x[i] - mx - lse;
}

// Repetition penalty (divide positive logits, multiply negative ones, as in CTRL / llama.cpp),
// then OpenAI-style frequency and presence penalties, over the recent tokens.
void Sampler::apply_penalties(std::vector<Cand>& c) const {
  if (recent_.empty() ||
      (p_.repeat_penalty == 1.f && p_.frequency_penalty == 0.f && p_.presence_penalty == 0.f))
    return;
  std::unordered_map<int32_t, int> count;
  for (int32_t t : recent_) ++count[t];
  for (const auto& [tok, cnt] : count) {
    if (tok < 0 || size_t(tok) >= c.size()) continue;
    float& l = c[size_t(tok)].logit;  // c is still indexed by id here
    l = l <= 0.f ? l * p_.repeat_penalty : l / p_.repeat_penalty;
    l -= float(cnt) * p_.frequency_penalty + p_.presence_penalty;
  }
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  if (n_vocab <= 0) throw Error("sample: empty vocabulary");
  cands_.resize(size_t(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) cands_[size_t(i)] = {int32_t(i), logits[i], 0.f};
  apply_penalties(cands_);

  if (p_.temperature <= 0.f) {
    size_t best = 0;
    for (size_t i = 1; i < cands_.size(); ++i)
      if (cands_[i].logit > cands_[best].logit) best = i;
    return cands_[best].id;
  }

  auto by_logit = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  // top-k: keep the k best, sorted.
  size_t k = cands_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < k) k = size_t(p_.top_k);
  std::partial_sort(cands_.begin(), cands_.begin() + ptrdiff_t(k), cands_.end(), by_logit);
  cands_.resize(k);

  // Probabilities of what is left (before temperature, as llama.cpp's top-p/min-p see them).
  auto softmax = [&](float temp) {
    const float mx = cands_[0].logit;
    double sum = 0.0;
    for (Cand& c : cands_) {
      c.p = std::exp((c.logit - mx) / temp);
      sum += c.p;
    }
    for (Cand& c : cands_) c.p = float(c.p / sum);
  };
  softmax(1.f);
  if (p_.top_p < 1.f) {
    double cum = 0.0;
    size_t keep = cands_.size();
    for (size_t i = 0; i < cands_.size(); ++i) {
      cum += cands_[i].p;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cands_.resize(std::max<size_t>(1, keep));
  }
  if (p_.min_p > 0.f) {
    const float thresh = cands_[0].p * p_.min_p;
    size_t keep = 1;
    while (keep < cands_.size() && cands_[keep].p >= thresh) ++keep;
    cands_.resize(keep);
  }
  softmax(p_.temperature);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const double r = uni(rng_);
  double cum = 0.0;
  for (const Cand& c : cands_) {
    cum += c.p;
    if (r < cum) return c.id;
  }
  return cands_.back().id;
}

}  // namespace tf
