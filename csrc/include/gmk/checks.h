// Torch-side argument checks and stream set-up shared by every family's prepare functions.
// One message format, `op: argument must be ..., got ...`, and one exception type per kind of
// problem: TORCH_CHECK_TYPE (Python TypeError) for a wrong dtype, TORCH_CHECK_VALUE (Python
// ValueError) for a wrong shape, device or value. These are the checks memory safety needs for
// callers of torch.ops.gmkernels.* that skip the Python wrappers (which check user arguments
// first): shapes, dtypes, devices and the docs/spec.md §0 row limits.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

#include "gmk/enums.h"
#include "gmk/philox.h"

namespace gmk {

// docs/spec.md §0 row view of a random tensor: dim 0 is the row (a 0-d tensor is one row).
struct RowView {
  int64_t rows;
  int64_t M;
};

inline RowView row_view(at::IntArrayRef sizes) {
  int64_t numel = 1;
  for (auto s : sizes) numel *= s;
  if (sizes.empty()) return {1, 1};
  const int64_t rows = sizes[0];
  return {rows, rows == 0 ? 0 : numel / rows};
}

// Checks the docs/spec.md §0 limits and builds the stream. seed and offset arrive as int64 holding the
// bits of a uint64 (the Python wrappers range-check them and convert).
inline PhiloxStream checked_stream(const char* op, at::IntArrayRef sizes, int64_t seed,
                                   int64_t offset, int64_t sample_offset) {
  const RowView v = row_view(sizes);
  TORCH_CHECK_VALUE(sample_offset >= 0, op, ": sample_offset must be >= 0, got ", sample_offset);
  TORCH_CHECK_VALUE(sample_offset < (int64_t{1} << 32), op, ": sample_offset must be < 2^32, got ",
                    sample_offset);
  TORCH_CHECK_VALUE(v.rows + sample_offset < (int64_t{1} << 32), op,
                    ": rows + sample_offset must be < 2^32 (docs/spec.md §0), got rows=", v.rows,
                    " sample_offset=", sample_offset);
  TORCH_CHECK_VALUE(v.M < (int64_t{1} << 34), op,
              ": a row (numel / size(0)) must hold fewer than 2^34 elements, got ", v.M);
  return make_stream(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                     static_cast<uint64_t>(sample_offset));
}

// A step count n of a call that uses the `positions` stream positions offset .. offset +
// positions - 1 (offset: the bits of a uint64): n < 2^32, and the range ends at or below 2^64,
// so the Philox counter never wraps (a wrapped range repeats the stream). `what` names the
// position count in the message ("2k", "n_sweeps").
inline void check_span(const char* op, const char* name, int64_t n, int64_t offset,
                       uint64_t positions, const char* what) {
  TORCH_CHECK_VALUE(n < (int64_t{1} << 32), op, ": ", name, " must be < 2^32, got ", n);
  const uint64_t off = static_cast<uint64_t>(offset);
  TORCH_CHECK_VALUE(positions == 0 || positions - 1 <= ~uint64_t{0} - off, op, ": offset + ", what,
                    " must be <= 2^64 (the stream positions of the call), got offset=", off, ", ",
                    name, "=", n);
}

inline void check_same(const char* op, const at::Tensor& a, const char* an, const at::Tensor& b,
                       const char* bn) {
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), op, ": ", bn, " must have the shape of ", an, " ",
                    a.sizes(), ", got ", b.sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), op, ": ", bn, " must have the dtype of ",
                   an, " (", a.scalar_type(), "), got ", b.scalar_type());
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": ", bn, " must be on the device of ", an,
                    " (", a.device(), "), got ", b.device());
}

// A per-sample scalar: None, or a (rows,) tensor on x's device. Returned contiguous in `acc`.
inline at::Tensor per_sample(const char* op, const std::optional<at::Tensor>& t, const char* name,
                             const at::Tensor& x, at::ScalarType acc) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  const at::Tensor& v = *t;
  const int64_t rows = x.dim() == 0 ? 1 : x.size(0);
  TORCH_CHECK_VALUE(v.dim() == 1 && v.size(0) == rows, op, ": ", name,
                    " must be a float or a per-sample tensor of shape (", rows, ",), got shape ",
                    v.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(v.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor, got ", v.scalar_type());
  TORCH_CHECK_VALUE(v.device() == x.device(), op, ": ", name, " must be on ", x.device(),
                    ", got ", v.device());
  return v.to(acc).contiguous();
}

// An integer-coded enum argument (gmk/enums.h), checked once: the error names the argument
// and the valid codes.
template <typename E>
E enum_arg(const char* op, const char* arg, int64_t v) {
  TORCH_CHECK_VALUE(enum_code_valid<E>(v), op, ": ", arg, " must be ", EnumInfo<E>::kChoices,
                    ", got ", v);
  return static_cast<E>(v);
}

// x must be a floating-point tensor (float16, bfloat16, float32, float64).
inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", arg,
                   " must be a floating-point tensor, got ", t.scalar_type());
}

// t must be float32 or float64 (the families whose kernels compute in the input dtype).
inline void check_real(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ",
                   arg, " must be float32 or float64, got ", t.scalar_type());
}

inline at::ScalarType acc_type_of(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Kernels write contiguous memory: an `out` of another layout is filled through a contiguous
// temporary and copied back, so any strides work (CPU and CUDA glue alike).
template <typename Fill>
void fill_any_layout(at::Tensor& out, const Fill& fill) {
  if (out.is_contiguous()) {
    fill(out);
  } else {
    at::Tensor tmp = at::empty(out.sizes(), out.options());
    fill(tmp);
    out.copy_(tmp);
  }
}

}  // namespace gmk
