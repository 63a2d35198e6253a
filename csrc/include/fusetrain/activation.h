// Element-wise activations and their derivatives, shared by the CPU and CUDA kernels (one
// definition of the math; the devices differ only in how they iterate).
// reference: torch.nn.ReLU, LeakyReLU, Tanh, Sigmoid.
#pragma once
#include <math.h>

#include <string>
#include <type_traits>

#include "fusetrain/common.h"

namespace fusetrain {

enum class Act : int { kIdentity = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4 };

// The activation of a code from Python (fusetrain.ops.ACTIVATIONS).
inline Act act_from_code(int code) {
  check(code >= 0 && code <= 4, "act code must be in [0, 4], got " + std::to_string(code));
  return static_cast<Act>(code);
}

// Calls run(std::integral_constant<Act, A>{}) for the activation `act`: each activation's loop
// is its own instantiation, with no branch per element.
template <class Run>
void with_act(Act act, Run&& run) {
  switch (act) {
    case Act::kIdentity:
      return run(std::integral_constant<Act, Act::kIdentity>{});
    case Act::kRelu:
      return run(std::integral_constant<Act, Act::kRelu>{});
    case Act::kLeakyRelu:
      return run(std::integral_constant<Act, Act::kLeakyRelu>{});
    case Act::kTanh:
      return run(std::integral_constant<Act, Act::kTanh>{});
    case Act::kSigmoid:
      return run(std::integral_constant<Act, Act::kSigmoid>{});
  }
}

// act(z). ReLU keeps NaN (z <= 0 is false for NaN), as PyTorch does.
template <Act A>
FT_HOST_DEVICE float act_fwd(float z, float slope) {
  if constexpr (A == Act::kIdentity) return z;
  if constexpr (A == Act::kRelu) return z <= 0.0f ? 0.0f : z;
  if constexpr (A == Act::kLeakyRelu) return z > 0.0f ? z : z * slope;
  if constexpr (A == Act::kTanh) return tanhf(z);
  if constexpr (A == Act::kSigmoid) return 1.0f / (1.0f + expf(-z));
  return z;
}

// d act / d z in terms of the activation's output a = act(z). For LeakyReLU this needs
// slope >= 0 (with a negative slope a > 0 for z of either sign; callers keep z instead).
template <Act A>
FT_HOST_DEVICE float act_grad(float a, float slope) {
  if constexpr (A == Act::kIdentity) return 1.0f;
  if constexpr (A == Act::kRelu) return a <= 0.0f ? 0.0f : 1.0f;
  if constexpr (A == Act::kLeakyRelu) return a > 0.0f ? 1.0f : slope;
  if constexpr (A == Act::kTanh) return 1.0f - a * a;
  if constexpr (A == Act::kSigmoid) return a * (1.0f - a);
  return 1.0f;
}

}  // namespace fusetrain
