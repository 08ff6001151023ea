// Torch-side helpers shared by every family's device-generic op bodies (<group>_ops.h) and
// their CPU and CUDA run functions: optional tensors, raw pointers of possibly-absent tensors,
// and the device guard of a CPU body. Ordinary C++ with torch headers; never included by a .cu
// file.
//
// The glue pattern: each op is one body template, `op<Dev>(schema arguments...)`, written once
// in <group>_ops.h: it takes the device guard (`typename Dev::Guard`), calls the op's prepare
// (<group>.cpp: checks, contiguous copies, the stream), allocates the outputs and calls the
// device's run function (`Dev::...`: a CPU loop in <group>_cpu.cpp, a CUDA launch in
// <group>_cuda.cpp). Each device file registers `&op<ItsDev>` in its TORCH_LIBRARY_IMPL block.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <type_traits>

namespace gmk {

// Whether an optional tensor argument (`Tensor?` in a schema) is present.
inline bool has_tensor(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// The raw data of a tensor that may be undefined (null then): the kernels take a null pointer
// for an absent per-row coefficient, output or scratch buffer.
template <typename T = void>
T* opt_ptr(const at::Tensor& t) {
  if constexpr (std::is_void_v<T>) {
    return t.defined() ? t.data_ptr() : nullptr;
  } else {
    return t.defined() ? t.data_ptr<T>() : nullptr;
  }
}

// As opt_ptr, and null for an empty tensor too: the (0,) placeholders of gradients that were
// not asked for.
template <typename T = void>
T* opt_ptr_nonempty(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? opt_ptr<T>(t) : nullptr;
}

// The device guard of a CPU body: nothing to set.
struct NoDeviceGuard {
  explicit NoDeviceGuard(at::Device) {}
};

}  // namespace gmk
