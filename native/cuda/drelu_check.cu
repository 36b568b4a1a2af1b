// The check that lets linear_backward use cuBLASLt's DRELU_BGRAD (or DRELU) epilogue with our
// live-unit masks. The masks are written by our dropout kernel in the layout cuBLASLt documents for its
// ReLU bit-mask (a column-major matrix of bits with a leading dimension in bits), but the order
// of bits within memory words is not documented. So, once per activation type, the epilogue runs
// on random data (a 192-unit layer below, ld 256 bits, so rows have padding bits; dropout's scale
// as alpha) beside the GEMM + relu_dropout_backward pair it replaces, and is used only where
// both agree: the same zero pattern and values and bias gradients within the type's rounding.
// The epilogue is off unless NCF_CUDA_DRELU=1 (it measured slower than the pass on an H100) or
// NCF_CUDA_DRELU=mask (DRELU, then a column-sum pass: input_grad_drelu).
#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

// A small deterministic generator (the check must not depend on the training seed).
struct Lcg {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next()) / 2147483648.0f; }
};

// The largest |a - b| over the largest |b|, and whether a and b are zero at the same places.
bool agree(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  float err = 0.0f, top = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] == 0.0f) != (b[i] == 0.0f) || !std::isfinite(a[i])) return false;
    err = std::fmax(err, std::fabs(a[i] - b[i]));
    top = std::fmax(top, std::fabs(b[i]));
  }
  return err <= tol * top;
}

}  // namespace

bool CudaBackend::drelu_epilogue_ok(DType t) {
  if (drelu_mode_ == DreluMode::Off) return false;
  int& state = drelu_state_[t == DType::F16 ? 1 : 0];
  if (state < 0) {
    state = check_drelu_epilogue(t) ? 1 : 0;
    if (!state)
      std::fprintf(stderr,
                   "ncf-native: cuBLASLt's %s epilogue is unavailable or disagrees with the reference for %s "
                   "activations on this GPU; linear_backward runs a separate masking pass instead\n",
                   drelu_mode_ == DreluMode::Bgrad ? "DRELU_BGRAD" : "DRELU", dtype_name(t));
  }
  return state == 1;
}

bool CudaBackend::check_drelu_epilogue(DType t) {
  const int n = 256, out = 64, in = 192;
  const bool half = t == DType::F16;
  Lcg rng;
  std::vector<float> dz(size_t(n) * out), w(size_t(out) * in);
  for (float& v : dz) v = rng.uniform(-1.0f, 1.0f);
  for (float& v : w) v = rng.uniform(-0.5f, 0.5f);
  const int64_t ld = UnitMask::ld_for(in);
  std::vector<uint8_t> bits(UnitMask::bytes_for(n, in));
  for (uint8_t& b : bits) b = uint8_t(rng.next() >> 8);

  BackendArray<float> d_dz(*this, dz.data(), dz.size()), d_w(*this, w.data(), w.size());
  BackendArray<uint8_t> d_bits(*this, bits.data(), bits.size());
  BackendArray<unsigned char> dz_half(*this, dz.size() * 2), w_half(*this, w.size() * 2);
  BackendArray<unsigned char> dx_a(*this, size_t(n) * in * 4), dx_b(*this, size_t(n) * in * 4);
  BackendArray<float> gb_a(*this, size_t(in)), gb_b(*this, size_t(in)), read(*this, size_t(n) * in);
  if (half) {
    to_half(d_dz.get(), dz_half.get(), dz.size());
    to_half(d_w.get(), w_half.get(), w.size());
  }
  LinearParams p;
  p.w = d_w.get();
  p.w_half = half ? w_half.get() : nullptr;
  p.in = in;
  p.out = out;
  const Mat dzm{half ? static_cast<void*>(dz_half.get()) : d_dz.get(), t, n, out};
  const Mat a{dx_a.get(), t, n, in}, b{dx_b.get(), t, n, in};
  LayerBelow below;
  below.mask = UnitMask{d_bits.get(), ld};
  below.dropout.active = true;
  below.dropout.scale = 2.0f;

  below.y = a;  // not read: the mask gives the live units
  below.grad_b = gb_a.get();
  if (!input_grad_drelu(dzm, p, a, below)) return false;
  gemm_->run(input_grad_gemm(dzm, p, b), stream_);
  below.y = b;
  below.grad_b = gb_b.get();
  relu_dropout_backward(b, b, below.mask, below.dropout, below.grad_b);

  auto host = [&](const Mat& m) {
    std::vector<float> v(size_t(n) * in);
    if (half) from_half(m.data, read.get(), v.size());
    download(v.data(), half ? static_cast<const void*>(read.get()) : m.data, v.size() * 4);
    return v;
  };
  std::vector<float> ga(static_cast<size_t>(in)), gb(static_cast<size_t>(in));
  download(ga.data(), gb_a.get(), ga.size() * 4);
  download(gb.data(), gb_b.get(), gb.size() * 4);
  const float tol = half ? 2e-2f : 1e-2f;  // fp16 outputs; TF32 inputs on either side
  return agree(host(a), host(b), tol) && agree(ga, gb, tol);
}

}  // namespace ncf::cuda
