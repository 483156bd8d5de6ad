// bfloat16 x bfloat16 -> float32 matrix products on the CPU through Intel MKL
// (cblas_gemm_bf16bf16f32: AMX or AVX512-BF16 where the CPU has them), as an XLA FFI
// custom call. Operands are [..., rows, cols] with equal or broadcast (size 1) batch dims.
#include <cstdint>
#include <mkl.h>
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

static int64_t batch_of(ffi::Span<const int64_t> dims) {
  int64_t n = 1;
  for (size_t i = 0; i + 2 < dims.size(); ++i) n *= dims[i];
  return n;
}

static ffi::Error Bf16Gemm(ffi::Buffer<ffi::BF16> a, ffi::Buffer<ffi::BF16> b,
                           ffi::ResultBuffer<ffi::F32> out, bool trans_a, bool trans_b) {
  auto da = a.dimensions(), db = b.dimensions(), dout = out->dimensions();
  if (da.size() < 2 || db.size() < 2 || dout.size() < 2)
    return ffi::Error::InvalidArgument("bf16_gemm: operands must have rank >= 2");
  const int64_t ra = da[da.size() - 2], ca = da[da.size() - 1];
  const int64_t rb = db[db.size() - 2], cb = db[db.size() - 1];
  const int64_t m = trans_a ? ca : ra, k = trans_a ? ra : ca;
  const int64_t kb = trans_b ? cb : rb, n = trans_b ? rb : cb;
  if (k != kb) return ffi::Error::InvalidArgument("bf16_gemm: contracting dims differ");
  const int64_t batch_a = batch_of(da), batch_b = batch_of(db), batch = batch_of(dout);
  if ((batch_a != batch && batch_a != 1) || (batch_b != batch && batch_b != 1))
    return ffi::Error::InvalidArgument("bf16_gemm: batch dims do not broadcast");
  auto* pa = reinterpret_cast<const MKL_BF16*>(a.typed_data());
  auto* pb = reinterpret_cast<const MKL_BF16*>(b.typed_data());
  float* pc = out->typed_data();
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if (m == 0 || n == 0 || batch == 0) return ffi::Error::Success();
  if (k == 0) {
    for (int64_t i = 0; i < batch * m * n; ++i) pc[i] = 0.0f;
    return ffi::Error::Success();
  }
  if (batch_b == 1 && batch_a == batch && !trans_a) {
    // Row-major [batch, m, k] is [batch * m, k]: one product for the whole batch.
    cblas_gemm_bf16bf16f32(CblasRowMajor, ta, tb, batch * m, n, k, 1.0f, pa, ca, pb, cb, 0.0f,
                           pc, n);
    return ffi::Error::Success();
  }
  for (int64_t i = 0; i < batch; ++i) {
    cblas_gemm_bf16bf16f32(CblasRowMajor, ta, tb, m, n, k, 1.0f,
                           pa + (batch_a == 1 ? 0 : i * ra * ca), ca,
                           pb + (batch_b == 1 ? 0 : i * rb * cb), cb, 0.0f, pc + i * m * n, n);
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(codonnt_bf16_gemm, Bf16Gemm,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b"));
