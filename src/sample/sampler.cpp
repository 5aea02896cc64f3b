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

  // The chain works on candidates in order of logit (ties by id), but never sorts the whole
  // vocabulary (with OpenAI's defaults, no top-k and top-p 1, a full sort was most of the
  // sampling time): top-k partitions, min-p filters, and top-p and the draw find where the
  // probability mass, summed in that order, crosses a value by halving the candidates around
  // their median (nth_element), which is linear on average, and sort only the last few.
  auto by_logit = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  // The rank i at which the mass of ranks 0..i first reaches x (exceeds it if strict), with
  // ranks 0..i moved to the front (the bins above i's in no particular order: what follows
  // only needs the set) and i at its place; cands_.size() if it never does. The candidates are
  // binned by logit (bins are monotone in the logit, so a bin's members rank after those of
  // the bins above it), the bins' masses summed from the top, and only the bin where the mass
  // crosses x is sorted.
  auto crossing = [&](double x, bool strict) {
    auto reaches = [&](double m) { return strict ? m > x : m >= x; };
    constexpr int kBins = 1024;
    // Over the finite logits: masked ones (-inf, grammars) go to the last bin with p = 0.
    float hi = -INFINITY, lo = INFINITY;
    for (const Cand& c : cands_) {
      hi = std::max(hi, c.logit);
      if (c.logit > -INFINITY) lo = std::min(lo, c.logit);
    }
    const float scale = hi > lo && std::isfinite(hi - lo) ? float(kBins) / (hi - lo) : 0.f;
    // (std::min keeps kBins - 1 when the product is NaN.)
    auto bin = [&](float l) {
      return l >= lo ? int(std::min(float(kBins - 1), (hi - l) * scale)) : kBins - 1;
    };
    double mass[kBins] = {};
    for (const Cand& c : cands_) mass[bin(c.logit)] += c.p;
    double acc = 0.0;  // the mass of the bins above
    int b = 0;
    while (b < kBins && !reaches(acc + mass[b])) acc += mass[b++];
    if (b == kBins) b = kBins - 1;  // rounding: look in the last bin all the same
    const auto above = std::partition(cands_.begin(), cands_.end(),
                                      [&](const Cand& c) { return bin(c.logit) < b; });
    const auto in =
        std::partition(above, cands_.end(), [&](const Cand& c) { return bin(c.logit) == b; });
    std::sort(above, in, by_logit);
    for (auto it = above; it != in; ++it)
      if (reaches(acc += it->p)) return size_t(it - cands_.begin());
    return cands_.size();
  };
  // top-k: keep the k best.
  if (p_.top_k > 0 && size_t(p_.top_k) < cands_.size()) {
    std::nth_element(cands_.begin(), cands_.begin() + p_.top_k, cands_.end(), by_logit);
    cands_.resize(size_t(p_.top_k));
  }
  const float mx = std::max_element(cands_.begin(), cands_.end(), [](const Cand& a, const Cand& b) {
                     return a.logit < b.logit;
                   })->logit;

  // Probabilities of what is left (before temperature, as llama.cpp's top-p/min-p see them).
  auto softmax = [&](float temp) {
    double sum = 0.0;
    for (Cand& c : cands_) {
      c.p = std::exp((c.logit - mx) / temp);
      sum += c.p;
    }
    for (Cand& c : cands_) c.p = float(c.p / sum);
  };
  softmax(1.f);
  const size_t n_all = cands_.size();
  if (p_.top_p < 1.f) {
    const size_t i = crossing(p_.top_p, false);
    cands_.resize(std::max<size_t>(1, std::min(i + 1, cands_.size())));
  }
  if (p_.min_p > 0.f) {
    // Probabilities fall with the order, so the kept ones are all those over the threshold
    // (the best one always is).
    float best = 0.f;
    for (const Cand& c : cands_) best = std::max(best, c.p);
    const float t = best * p_.min_p;
    const auto end =
        std::partition(cands_.begin(), cands_.end(), [&](const Cand& c) { return c.p >= t; });
    cands_.resize(std::max<size_t>(1, size_t(end - cands_.begin())));
  }
  // (At temperature 1 with nothing cut the probabilities are already these.)
  if (p_.temperature != 1.f || cands_.size() != n_all) softmax(p_.temperature);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const double r = uni(rng_);
  const size_t i = crossing(r, true);
  if (i < cands_.size()) return cands_[i].id;
  // Rounding left r past the total: the last in order (by_logit orders best first).
  return std::max_element(cands_.begin(), cands_.end(), by_logit)->id;
}

}  // namespace tf
