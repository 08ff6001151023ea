// The _C extension module: build facts and small helpers. The ops themselves are registered
// with the dispatcher by TORCH_LIBRARY_FRAGMENT blocks in each family's .cpp (loading this
// module's shared library is what registers them).
#include <torch/extension.h>

#include <cstdint>
#include <string>
#include <tuple>

#include "gmk/cpu_stream.h"
#include "gmk/philox.h"

#ifndef GMK_TORCH_VERSION
#define GMK_TORCH_VERSION "unknown"
#endif
#ifndef GMK_CUDA_ARCHS
#define GMK_CUDA_ARCHS ""
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
  d["torch"] = GMK_TORCH_VERSION;
#ifdef GMK_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["cuda_archs"] = GMK_CUDA_ARCHS;
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["cpu_isa"] = gmk::cpu::isa_name(gmk::cpu::detect_isa());
  return d;
}

// The C++ Philox on a raw (counter, key), for the known-answer tests from Python.
std::tuple<uint32_t, uint32_t, uint32_t, uint32_t> philox(
    std::tuple<uint32_t, uint32_t, uint32_t, uint32_t> ctr, std::tuple<uint32_t, uint32_t> key) {
  const gmk::u32x4 o = gmk::philox4x32_10(
      gmk::u32x4{std::get<0>(ctr), std::get<1>(ctr), std::get<2>(ctr), std::get<3>(ctr)},
      std::get<0>(key), std::get<1>(key));
  return {o.x, o.y, o.z, o.w};
}

// Force the CPU kernels onto a lower SIMD path ("baseline", "avx2", "avx512"; "auto" = best).
// Returns the path now in use. Asking for more than the CPU has gives the best it has.
std::string set_cpu_isa(const std::string& name) {
  using gmk::cpu::Isa;
  int v = -1;
  if (name == "baseline") v = static_cast<int>(Isa::kBaseline);
  else if (name == "avx2") v = static_cast<int>(Isa::kAvx2);
  else if (name == "avx512") v = static_cast<int>(Isa::kAvx512);
  else TORCH_CHECK_VALUE(name == "auto", "set_cpu_isa: expected auto, baseline, avx2 or avx512, got ", name);
  gmk::cpu::isa_override().store(v);
  return gmk::cpu::isa_name(gmk::cpu::detect_isa());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gmkernels compiled extension: registers torch.ops.gmkernels.* and build facts";
  m.def("build_info", &build_info, "What this extension was built with (dict).");
  m.def("philox4x32_10", &philox, pybind11::arg("counter"), pybind11::arg("key"),
        "Philox4x32-10 of one 4-word counter and 2-word key (uint32 values).");
  m.def("set_cpu_isa", &set_cpu_isa, pybind11::arg("name"),
        "Force the CPU kernels' SIMD path (auto, baseline, avx2, avx512); returns the one in use.");
}
