// First maximum of a float32 map (row-major), as torch.argmax: NaN counts as the maximum (the first NaN wins).
// Two passes: (1) the maximum with independent vector accumulators plus a NaN flag, (2) the first index equal
// to it (usually stops early; the map is L1-resident after pass 1). A map containing NaN goes to the scalar
// loop. SIMD versions for AVX-512 and AVX2 are picked at run time (first_peak_f32); the portable fallback uses
// GCC/Clang vector extensions (SSE2/NEON), or plain scalar code on other compilers.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HGFAST_X86_SIMD 1
#endif

namespace hgfast {

template <typename F>
inline int64_t first_peak_scalar(const F* p, int64_t n) {
  int64_t idx = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] != p[i]) return i;
    if (p[i] > p[idx]) idx = i;
  }
  return idx;
}

// Index of the first element of p[from, n) equal to m (exists by construction).
inline int64_t first_equal_scalar(const float* p, int64_t from, int64_t n, float m) {
  for (int64_t i = from; i < n; ++i)
    if (p[i] == m) return i;
  return n;  // unreachable when m came from p
}

#if defined(__GNUC__)
inline int64_t first_peak_generic(const float* p, int64_t n) {
  typedef float f32x4 __attribute__((vector_size(16)));
  typedef int32_t i32x4 __attribute__((vector_size(16)));
  if (n < 16) return first_peak_scalar(p, n);
  f32x4 m0, m1, m2, m3;
  std::memcpy(&m0, p, sizeof m0);
  m1 = m2 = m3 = m0;
  i32x4 bad = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x4 v0, v1, v2, v3;
    std::memcpy(&v0, p + i, sizeof v0);
    std::memcpy(&v1, p + i + 4, sizeof v1);
    std::memcpy(&v2, p + i + 8, sizeof v2);
    std::memcpy(&v3, p + i + 12, sizeof v3);
    m0 = v0 > m0 ? v0 : m0;
    m1 = v1 > m1 ? v1 : m1;
    m2 = v2 > m2 ? v2 : m2;
    m3 = v3 > m3 ? v3 : m3;
    bad |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);
  }
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  m0 = m2 > m0 ? m2 : m0;
  float m = m0[0];
  bool nan = false;
  for (int l = 0; l < 4; ++l) m = m0[l] > m ? m0[l] : m, nan |= bad[l] != 0;
  for (; i < n; ++i) m = p[i] > m ? p[i] : m, nan |= p[i] != p[i];
  return nan ? first_peak_scalar(p, n) : first_equal_scalar(p, 0, n, m);
}
#endif

#if defined(HGFAST_X86_SIMD)
__attribute__((target("avx512f"))) inline int64_t first_peak_avx512(const float* p, int64_t n) {
  if (n < 64) return first_peak_scalar(p, n);
  __m512 m0 = _mm512_loadu_ps(p), m1 = m0, m2 = m0, m3 = m0;
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 v0 = _mm512_loadu_ps(p + i), v1 = _mm512_loadu_ps(p + i + 16);
    const __m512 v2 = _mm512_loadu_ps(p + i + 32), v3 = _mm512_loadu_ps(p + i + 48);
    m0 = _mm512_max_ps(v0, m0);  // NaN in v0 is dropped here and caught by `bad`
    m1 = _mm512_max_ps(v1, m1);
    m2 = _mm512_max_ps(v2, m2);
    m3 = _mm512_max_ps(v3, m3);
    bad |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(p + i);
    m0 = _mm512_max_ps(v, m0);
    bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  if (i < n) {  // tail: masked load, padding lanes repeat p[0] (never above the maximum)
    const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(p[0]), k, p + i);
    m0 = _mm512_max_ps(v, m0);
    bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  if (bad) return first_peak_scalar(p, n);
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
  const __m512 mv = _mm512_set1_ps(m);
  for (i = 0; i + 32 <= n; i += 32) {
    const __mmask16 e0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + i), mv, _CMP_EQ_OQ);
    const __mmask16 e1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + i + 16), mv, _CMP_EQ_OQ);
    if (e0 | e1) return i + (e0 ? __builtin_ctz(e0) : 16 + __builtin_ctz(e1));
  }
  return first_equal_scalar(p, i, n, m);
}

__attribute__((target("avx2"))) inline int64_t first_peak_avx2(const float* p, int64_t n) {
  if (n < 32) return first_peak_scalar(p, n);
  __m256 m0 = _mm256_loadu_ps(p), m1 = m0, m2 = m0, m3 = m0, bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 v0 = _mm256_loadu_ps(p + i), v1 = _mm256_loadu_ps(p + i + 8);
    const __m256 v2 = _mm256_loadu_ps(p + i + 16), v3 = _mm256_loadu_ps(p + i + 24);
    m0 = _mm256_max_ps(v0, m0);
    m1 = _mm256_max_ps(v1, m1);
    m2 = _mm256_max_ps(v2, m2);
    m3 = _mm256_max_ps(v3, m3);
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
  }
  m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m0);
  float m = lanes[0];
  bool nan = _mm256_movemask_ps(bad) != 0;
  for (int l = 1; l < 8; ++l) m = lanes[l] > m ? lanes[l] : m;
  for (int64_t t = i; t < n; ++t) m = p[t] > m ? p[t] : m, nan |= p[t] != p[t];
  if (nan) return first_peak_scalar(p, n);
  const __m256 mv = _mm256_set1_ps(m);
  for (i = 0; i + 16 <= n; i += 16) {
    const int e0 = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + i), mv, _CMP_EQ_OQ));
    const int e1 = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + i + 8), mv, _CMP_EQ_OQ));
    if (e0 | e1) return i + (e0 ? __builtin_ctz(e0) : 8 + __builtin_ctz(e1));
  }
  return first_equal_scalar(p, i, n, m);
}
#endif

// The best first_peak for this CPU, chosen once. HGFAST_FIRST_PEAK=avx2|generic|scalar picks a lesser one (tests
// run each; one this CPU or compiler lacks gives the best there is).
using FirstPeakFn = int64_t (*)(const float*, int64_t);

inline FirstPeakFn pick_first_peak() {
  const char* env = std::getenv("HGFAST_FIRST_PEAK");
  const std::string want = env ? env : "";
  if (want == "scalar") return first_peak_scalar<float>;
#if defined(HGFAST_X86_SIMD)
  __builtin_cpu_init();
  if (want != "generic") {
    if (want != "avx2" && __builtin_cpu_supports("avx512f")) return first_peak_avx512;
    if (__builtin_cpu_supports("avx2")) return first_peak_avx2;
  }
#endif
#if defined(__GNUC__)
  return first_peak_generic;
#else
  return first_peak_scalar<float>;
#endif
}

inline int64_t first_peak_f32(const float* p, int64_t n) {
  static const FirstPeakFn fn = pick_first_peak();
  return fn(p, n);
}

}  // namespace hgfast
