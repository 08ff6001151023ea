// What the dispatcher needs of gmkernels' in-place ops (the random fills random_<draw>_ and
// langevin_step_, whose schemas mark the tensor they write `Tensor(a!)`), so that they behave
// as torch's own in-place ops for callers of torch.ops.gmkernels.* and of the Python wrappers:
//
//  * check_writable: the written tensor must not overlap itself (an expanded tensor, an
//    as_strided view with overlapping strides): two elements that share memory would each be
//    written, and which write wins would depend on the device and the thread count;
//  * an ADInplaceOrView kernel (inplace_bump_version) that bumps the version counter of every
//    written tensor, so that autograd sees the write: a backward that saved the tensor, or a
//    base whose view was written, raises "modified by an inplace operation" instead of reading
//    the new values. A C++-registered op gets no such kernel from torch (the ADInplaceOrView
//    key falls through for it), so without this one the write is invisible to autograd;
//  * an Autograd kernel (inplace_no_grad) that refuses inputs requiring grad while grad mode
//    is on: the ops are not differentiable, and the write would otherwise leave the written
//    tensor with its old history (a silently wrong gradient).
//
// register_inplace_dispatch(m_autograd, m_ad_inplace, names) registers both for a group's ops.
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace gmk {

// The storage offset (in elements) of every element of t, as a flat int64 CPU tensor. Reads
// sizes and strides only.
inline at::Tensor element_offsets(const at::Tensor& t) {
  at::Tensor off = at::scalar_tensor(t.storage_offset(), at::kLong);
  for (int64_t d = 0; d < t.dim(); ++d) {
    std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
    shape[static_cast<size_t>(d)] = t.size(d);
    off = off + at::arange(t.size(d), at::kLong).mul_(t.stride(d)).view(shape);
  }
  return off.reshape({-1});
}

// Whether two elements of t share memory. at::has_internal_overlap answers for dense tensors
// and for a stride 0 on a dim of size > 1; for the other layouts, strides that, sorted, each
// exceed the span of the smaller dims cannot overlap (every slice, step, transpose or
// permutation of a dense tensor is such), and the rest (as_strided views) are decided exactly
// from the list of element offsets.
inline bool overlaps_itself(const at::Tensor& t) {
  if (t.numel() <= 1) return false;
  switch (at::has_internal_overlap(t)) {
    case at::MemOverlap::Yes:
      return true;
    case at::MemOverlap::No:
      return false;
    case at::MemOverlap::TooHard:
      break;
  }
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of the dims of size > 1
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) > 1) dims.emplace_back(t.stride(d), t.size(d));
  }
  std::sort(dims.begin(), dims.end());
  if (dims.front().first == 0) return true;
  int64_t span = 0;
  bool nested = true;
  for (const auto& [stride, size] : dims) {
    if (stride <= span) {
      nested = false;
      break;
    }
    span += stride * (size - 1);
  }
  if (nested) return false;
  const at::Tensor off = std::get<0>(at::sort(element_offsets(t)));
  return at::eq(off.slice(0, 1), off.slice(0, 0, -1)).any().item<bool>();
}

// The tensor an in-place op writes must not overlap itself (see overlaps_itself).
inline void check_writable(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(!overlaps_itself(t), op, ": ", name,
                    " must not have overlapping memory (an expanded tensor or a view with "
                    "overlapping strides), got shape ",
                    t.sizes(), " with strides ", t.strides(),
                    "; call .contiguous() / .clone() first");
}

// Whether a and b are the same view: same data pointer, sizes, strides and element size.
inline bool same_view(const at::Tensor& a, const at::Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.element_size() == b.element_size();
}

// The name of an op in messages, as its prepare function names it: gmkernels::langevin_step_
// -> gmkernels.langevin_step_, gmkernels::random_normal_ -> gmkernels.random.normal
// (random_ops.h, random_op_name).
inline std::string public_op_name(const c10::OperatorHandle& op) {
  std::string name = op.schema().name();
  const std::string ns = "gmkernels::";
  if (name.rfind(ns, 0) == 0) name = name.substr(ns.size());
  if (name.rfind("random_", 0) == 0 && name.back() == '_') {
    name = "random." + name.substr(7, name.size() - 8);
  }
  return "gmkernels." + name;
}

// Autograd kernel of an in-place op: refuses a tensor argument that requires grad (grad mode
// on), then runs the op below autograd.
inline void inplace_no_grad(const c10::OperatorHandle& op, c10::DispatchKeySet ks,
                            torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const size_t n = args.size();
  if (c10::GradMode::is_enabled()) {
    for (size_t i = 0; i < n; ++i) {
      const c10::IValue& v = (*stack)[stack->size() - n + i];
      TORCH_CHECK(!(v.isTensor() && v.toTensor().defined() && v.toTensor().requires_grad()),
                  public_op_name(op), ": ", args[i].name(),
                  " must not require grad (an in-place op is not differentiable), got a tensor "
                  "that requires grad; use the out-of-place op for autograd, or torch.no_grad()");
    }
  }
  op.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
}

// ADInplaceOrView kernel of an in-place op: runs the op, then bumps the version counter of
// every argument its schema marks written (`Tensor(a!)`), as torch's in-place ops do. An
// inference tensor outside inference mode (no version counter) is refused before the write.
inline void inplace_bump_version(const c10::OperatorHandle& op, c10::DispatchKeySet ks,
                                 torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const size_t n = args.size();
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < n; ++i) {
    const c10::AliasInfo* alias = args[i].alias_info();
    const c10::IValue& v = (*stack)[stack->size() - n + i];
    if (alias == nullptr || !alias->isWrite() || !v.isTensor()) continue;
    const at::Tensor& t = v.toTensor();
    TORCH_CHECK(!t.is_inference() || c10::InferenceMode::is_enabled(), public_op_name(op), ": ",
                args[i].name(),
                " must not be an inference tensor outside torch.inference_mode() (it has no "
                "version counter for autograd), got one; write a .clone() of it, or call inside "
                "torch.inference_mode()");
    written.push_back(t);
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) t.unsafeGetTensorImpl()->bump_version();
}

// Registers inplace_no_grad (Autograd) and inplace_bump_version (ADInplaceOrView) for `names`:
// call it from a group's TORCH_LIBRARY_IMPL(gmkernels, Autograd, ...) and (..., ADInplaceOrView,
// ...) blocks with that block's library and whether it is the Autograd one.
inline void register_inplace_dispatch(torch::Library& m, bool autograd,
                                      std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (autograd) {
      m.impl(name, torch::CppFunction::makeFromBoxedFunction<&inplace_no_grad>());
    } else {
      m.impl(name, torch::CppFunction::makeFromBoxedFunction<&inplace_bump_version>());
    }
  }
}

// The state an in-place training op (rbm_fit_epoch_, bm_fit_epoch_) writes: every tensor must be
// contiguous (the loops write through raw views of it) and share W's dtype and device.
inline void check_state(const char* op, const at::Tensor& W,
                        std::initializer_list<std::pair<const at::Tensor*, const char*>> state) {
  for (const auto& [t, name] : state) {
    TORCH_CHECK_VALUE(t->is_contiguous(), op, ": ", name, " must be contiguous (it is updated in "
                      "place), got strides ", t->strides());
    TORCH_CHECK_TYPE(t->scalar_type() == W.scalar_type(), op, ": ", name,
                     " must have the dtype of W (", W.scalar_type(), "), got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->device() == W.device(), op, ": ", name, " must be on W's device (",
                      W.device(), "), got ", t->device());
  }
}

}  // namespace gmk

// The Autograd and ADInplaceOrView registrations of a group's in-place ops, in one line:
//   GMK_INPLACE_DISPATCH("op_a_", "op_b_")
#define GMK_INPLACE_DISPATCH(...)                                        \
  TORCH_LIBRARY_IMPL(gmkernels, Autograd, m) {                           \
    gmk::register_inplace_dispatch(m, true, {__VA_ARGS__});              \
  }                                                                      \
  TORCH_LIBRARY_IMPL(gmkernels, ADInplaceOrView, m) {                    \
    gmk::register_inplace_dispatch(m, false, {__VA_ARGS__});             \
  }
