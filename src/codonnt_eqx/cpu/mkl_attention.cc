// Self-attention with key padding on the CPU, forward and backward, as XLA FFI custom calls:
// the flash algorithm (a tile of queries at a time, the probabilities recomputed in the
// backward from the saved log-sum-exp) with every product one MKL GEMM (float32, or bfloat16
// operands with float32 accumulation, the probabilities rounded to bfloat16) on strided
// [length, heads, dim] rows (no transposed copies), the exponentials vectorised here, and
// one (batch, head) pair per worker thread. Only the valid keys of a row are visited, so padded
// keys never reach outputs or gradients, whatever they hold.
#include <mkl.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kTile = 128;  // queries per tile: [128, length] scores stay in L2

struct Layout {
  int64_t batch, length, heads, dim;
  int64_t row() const { return heads * dim; }  // stride between positions
  int64_t pairs() const { return batch * heads; }
  int64_t base(int64_t pair) const {  // first element of (batch, head) = pair
    return (pair / heads) * length * row() + (pair % heads) * dim;
  }
};

ffi::Error layout_of(ffi::Span<const int64_t> dims, ffi::Span<const int64_t> lengths,
                     Layout* out) {
  if (dims.size() < 3) return ffi::Error::InvalidArgument("attention: q must be [..., L, H, D]");
  int64_t batch = 1;
  for (size_t i = 0; i + 3 < dims.size(); ++i) batch *= dims[i];
  int64_t count = 1;
  for (int64_t d : lengths) count *= d;
  if (count != batch) return ffi::Error::InvalidArgument("attention: one length per sequence");
  const size_t r = dims.size();
  *out = Layout{batch, dims[r - 3], dims[r - 2], dims[r - 1]};
  return ffi::Error::Success();
}

int workers() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// f(pair, scratch) for every (batch, head) pair, spread over the CPUs this process may use;
// MKL runs single-threaded inside each worker (the parallelism is over pairs).
template <class F>
void for_each_pair(int64_t pairs, int64_t scratch_floats, F f) {
  std::atomic<int64_t> next{0};
  auto work = [&] {
    const int previous = mkl_set_num_threads_local(1);
    std::vector<float> scratch(scratch_floats);
    for (int64_t p; (p = next.fetch_add(1)) < pairs;) f(p, scratch.data());
    mkl_set_num_threads_local(previous);
  };
  const int64_t count = std::min<int64_t>(workers(), pairs);
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < count; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

int64_t valid_keys(const int32_t* lengths, const Layout& s, int64_t pair) {
  return std::clamp<int64_t>(lengths[pair / s.heads], 0, s.length);
}

void zero_rows(float* x, int64_t rows, const Layout& s) {
  for (int64_t i = 0; i < rows; ++i) std::fill_n(x + i * s.row(), s.dim, 0.0f);
}

// The row loops in 16 independent lanes, so that the compiler vectorises the reductions
// without reassociating (no -ffast-math), cloned per instruction set and chosen at load time
// (the library may be built on one machine and used on another of a shared home). The
// x86-64-v3 / v4 levels, not "avx2" / "avx512f" alone, bring FMA: the exponential's
// polynomial ran 1.5x slower without it (Zen 3).
#define CODONNT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
constexpr int kLanes = 16;

CODONNT_CLONES float row_max(const float* x, int64_t n) {
  float lanes[kLanes];
  std::fill_n(lanes, kLanes, -std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[j + l]);
  for (; j < n; ++j) lanes[0] = std::max(lanes[0], x[j]);
  return *std::max_element(lanes, lanes + kLanes);
}

// 8 floats as one value (GCC's vector extension): one AVX register, two SSE ones in the
// default clone. A wider type is split into scalar code by GCC's AVX2 lowering (measured).
typedef float Floats __attribute__((vector_size(32)));
typedef int32_t Ints __attribute__((vector_size(32)));
constexpr int kWidth = sizeof(Floats) / sizeof(float);

// exp(x) for x <= 0 (a score minus its row's maximum or log-sum-exp), vectorised: x = n ln2 + r
// with |r| <= ln2 / 2, exp(r) by its degree-6 Taylor polynomial (relative error below 2e-7
// there), times 2^n built in the exponent bits. 0 below -87 (under float32's normal range);
// NaN stays NaN.
__attribute__((always_inline)) inline Floats exp_nonpositive(Floats x) {
  const Floats floor = x < -87.0f ? -87.0f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const Floats n = (floor * 1.44269504088896341f + kRound) - kRound;
  const Floats r = (floor - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts
  Floats p = r * (1.0f / 720.0f) + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;
  return x < -87.0f ? 0.0f : p * reinterpret_cast<const Floats&>(bits);
}

// The first `count` (< kWidth) of x, the other lanes -inf (whose exponential is 0).
__attribute__((always_inline)) inline Floats load(const float* x, int64_t count) {
  Floats v;
  for (int l = 0; l < kWidth; ++l)
    v[l] = l < count ? x[l] : -std::numeric_limits<float>::infinity();
  return v;
}

// row <- exp(row - shift) over n entries; returns their sum.
CODONNT_CLONES float exp_shifted(float* row, int64_t n, float shift) {
  Floats total = {};
  int64_t j = 0;
  for (; j + kWidth <= n; j += kWidth) {
    Floats x;
    std::memcpy(&x, row + j, sizeof x);
    x = exp_nonpositive(x - shift);
    total += x;
    std::memcpy(row + j, &x, sizeof x);
  }
  if (j < n) {
    Floats x = exp_nonpositive(load(row + j, n - j) - shift);
    total += x;
    std::memcpy(row + j, &x, (n - j) * sizeof(float));
  }
  float sum = 0.0f;
  for (int l = 0; l < kWidth; ++l) sum += total[l];
  return sum;
}

// p <- exp(p - lse), the probabilities again, and ds <- p * (ds - delta), the softmax
// backward in place over dP, in one pass.
CODONNT_CLONES void softmax_grad(float* p, float* ds, int64_t n, float lse, float delta) {
  int64_t j = 0;
  for (; j + kWidth <= n; j += kWidth) {
    Floats x, g;
    std::memcpy(&x, p + j, sizeof x);
    std::memcpy(&g, ds + j, sizeof g);
    x = exp_nonpositive(x - lse);
    g = x * (g - delta);
    std::memcpy(p + j, &x, sizeof x);
    std::memcpy(ds + j, &g, sizeof g);
  }
  for (; j < n; ++j) {  // the tail: one lane at a time
    const float x = exp_nonpositive(Floats{} + (p[j] - lse))[0];
    p[j] = x;
    ds[j] = x * (ds[j] - delta);
  }
}

// One GEMM, C = alpha op(A) op(B) + beta C (row-major), in float32 or, for bfloat16 operands,
// MKL's bfloat16 GEMM with float32 accumulation and result (AMX / AVX512-BF16 where present).
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
              n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const MKL_BF16* a,
          int64_t lda, const MKL_BF16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_gemm_bf16bf16f32(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                         tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                         ldc);
}

float to_float(float x) { return x; }
float to_float(MKL_BF16 x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// P or dS (float32) as the next GEMM's operand: themselves, or rounded to bfloat16 (nearest,
// ties to even) into `scratch`. A NaN stays a (quiet) NaN: rounding its bits could carry into
// the exponent or sign and turn it into infinity or zero.
const float* operand(const float* p, int64_t, float*) { return p; }
CODONNT_CLONES const MKL_BF16* operand(const float* p, int64_t count, MKL_BF16* scratch) {
  for (int64_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    scratch[i] = static_cast<MKL_BF16>(nan ? (bits >> 16) | 0x40u : rounded);
  }
  return scratch;
}

// Elements of scratch a worker needs beyond its float32 [tile, length] buffers: a rounded
// copy of one for bfloat16 operands.
template <class T>
constexpr int64_t narrow_copies() {
  return std::is_same_v<T, float> ? 0 : 1;
}

template <class T, ffi::DataType D>
ffi::Error Forward(ffi::Buffer<D> q, ffi::Buffer<D> k, ffi::Buffer<D> v,
                   ffi::Buffer<ffi::S32> lengths, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> lse, float scale) {
  Layout s;
  if (auto e = layout_of(q.dimensions(), lengths.dimensions(), &s); e.failure()) return e;
  auto data = [](auto& b) { return reinterpret_cast<const T*>(b.typed_data()); };
  const T *pq = data(q), *pk = data(k), *pv = data(v);
  const int32_t* len = lengths.typed_data();
  float *po = out->typed_data(), *pl = lse->typed_data();
  const int64_t ld = s.row(), tile_floats = kTile * s.length;
  const int64_t scratch = tile_floats + (narrow_copies<T>() * tile_floats + 1) / 2 + 1;
  for_each_pair(s.pairs(), scratch, [&](int64_t pair, float* buffer) {
    const int64_t base = s.base(pair), n = valid_keys(len, s, pair);
    float* scores = buffer;
    T* narrow = reinterpret_cast<T*>(buffer + tile_floats);
    float* lse_row = pl + pair * s.length;  // lse is [batch, heads, length]
    if (n == 0) {  // no valid key: output 0, lse +inf (the backward's exp(s - lse) is then 0)
      zero_rows(po + base, s.length, s);
      std::fill_n(lse_row, s.length, std::numeric_limits<float>::infinity());
      return;
    }
    for (int64_t i0 = 0; i0 < s.length; i0 += kTile) {
      const int64_t t = std::min(kTile, s.length - i0);
      gemm(false, true, t, n, s.dim, scale, pq + base + i0 * ld, ld, pk + base, ld, 0.0f, scores,
           n);
      float total[kTile], top[kTile];
      for (int64_t r = 0; r < t; ++r) {
        float* row = scores + r * n;
        top[r] = row_max(row, n);
        total[r] = exp_shifted(row, n, top[r]);  // >= 1: the maximum contributes exp(0)
      }
      float* o = po + base + i0 * ld;
      gemm(false, false, t, s.dim, n, 1.0f, operand(scores, t * n, narrow), n, pv + base, ld,
           0.0f, o, ld);
      for (int64_t r = 0; r < t; ++r) {
        const float inv = 1.0f / total[r];
        for (int64_t d = 0; d < s.dim; ++d) o[r * ld + d] *= inv;
        lse_row[i0 + r] = top[r] + std::log(total[r]);
      }
    }
  });
  return ffi::Error::Success();
}

template <class T, ffi::DataType D>
ffi::Error Backward(ffi::Buffer<D> q, ffi::Buffer<D> k, ffi::Buffer<D> v,
                    ffi::Buffer<ffi::F32> out, ffi::Buffer<ffi::F32> lse, ffi::Buffer<D> dout,
                    ffi::Buffer<ffi::S32> lengths, ffi::ResultBuffer<ffi::F32> dq,
                    ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv, float scale) {
  Layout s;
  if (auto e = layout_of(q.dimensions(), lengths.dimensions(), &s); e.failure()) return e;
  auto data = [](auto& b) { return reinterpret_cast<const T*>(b.typed_data()); };
  const T *pq = data(q), *pk = data(k), *pv = data(v), *pdo = data(dout);
  const float *po = out.typed_data(), *pl = lse.typed_data();
  const int32_t* len = lengths.typed_data();
  float *pdq = dq->typed_data(), *pdk = dk->typed_data(), *pdv = dv->typed_data();
  const int64_t ld = s.row(), tile_floats = kTile * s.length;
  // Probabilities and their gradients, [tile, length] each, and a rounded copy of one.
  const int64_t scratch = 2 * tile_floats + (narrow_copies<T>() * tile_floats + 1) / 2 + 1;
  for_each_pair(s.pairs(), scratch, [&](int64_t pair, float* buffer) {
    const int64_t base = s.base(pair), n = valid_keys(len, s, pair);
    const float* lse_row = pl + pair * s.length;
    zero_rows(pdk + base, s.length, s);
    zero_rows(pdv + base, s.length, s);
    if (n == 0) {
      zero_rows(pdq + base, s.length, s);
      return;
    }
    float *p = buffer, *ds = buffer + kTile * n;
    T* narrow = reinterpret_cast<T*>(buffer + 2 * tile_floats);
    for (int64_t i0 = 0; i0 < s.length; i0 += kTile) {
      const int64_t t = std::min(kTile, s.length - i0);
      const T *qt = pq + base + i0 * ld, *dot = pdo + base + i0 * ld;
      const float* ot = po + base + i0 * ld;
      gemm(false, true, t, n, s.dim, scale, qt, ld, pk + base, ld, 0.0f, p, n);
      gemm(false, true, t, n, s.dim, 1.0f, dot, ld, pv + base, ld, 0.0f, ds, n);  // dP = dO V^T
      for (int64_t r = 0; r < t; ++r) {
        // delta = sum_d O dO = sum_j P dP: the softmax backward's row term.
        float delta = 0.0f;
        for (int64_t d = 0; d < s.dim; ++d) delta += ot[r * ld + d] * to_float(dot[r * ld + d]);
        softmax_grad(p + r * n, ds + r * n, n, lse_row[i0 + r], delta);
      }
      const auto* dsn = operand(ds, t * n, narrow);
      gemm(false, false, t, s.dim, n, scale, dsn, n, pk + base, ld, 0.0f, pdq + base + i0 * ld,
           ld);                                                                  // dQ = scale dS K
      gemm(true, false, n, s.dim, t, scale, dsn, n, qt, ld, 1.0f, pdk + base, ld);  // dK += scale dS^T Q
      const auto* pn = operand(p, t * n, narrow);  // dS is used up: its copy can be reused
      gemm(true, false, n, s.dim, t, 1.0f, pn, n, dot, ld, 1.0f, pdv + base, ld);  // dV += P^T dO
    }
  });
  return ffi::Error::Success();
}

}  // namespace

#define CODONNT_ATTENTION(NAME, T, D)                                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME##_fwd, (Forward<T, D>),                             \
                                ffi::Ffi::Bind()                                         \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<ffi::S32>>()                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                        \
                                    .Attr<float>("scale"));                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME##_bwd, (Backward<T, D>),                            \
                                ffi::Ffi::Bind()                                         \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<ffi::F32>>()                        \
                                    .Arg<ffi::Buffer<ffi::F32>>()                        \
                                    .Arg<ffi::Buffer<D>>()                               \
                                    .Arg<ffi::Buffer<ffi::S32>>()                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                        \
                                    .Attr<float>("scale"));

CODONNT_ATTENTION(codonnt_attention, float, ffi::F32)
CODONNT_ATTENTION(codonnt_attention_bf16, MKL_BF16, ffi::BF16)
