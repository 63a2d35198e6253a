// cpu_isa(): the run-time choice of instruction set shared by the tile kernels and Philox.
#include "cpu_isa.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace fusetrain {

namespace {

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kPortable:
      break;
  }
  return "portable";
}

CpuIsa widest_supported() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f")) return CpuIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kPortable;
}

}  // namespace

CpuIsa cpu_isa() {
  // A throwing initializer leaves the static unset, so every later call throws the same error.
  static const CpuIsa isa = [] {
    const CpuIsa best = widest_supported();
    const char* env = std::getenv("FUSETRAIN_CPU_ISA");
    const std::string want = env ? env : "";
    if (want.empty()) return best;
    for (CpuIsa c : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      if (want != isa_name(c)) continue;
      if (c > best)
        throw std::invalid_argument("FUSETRAIN_CPU_ISA=" + want + " names an instruction set this CPU does not "
                                    "support (the widest it supports is " + isa_name(best) + ")");
      return c;
    }
    throw std::invalid_argument("FUSETRAIN_CPU_ISA must be one of avx512, avx2, portable (or unset for the widest "
                                "this CPU supports), got '" + want + "'");
  }();
  return isa;
}

}  // namespace fusetrain
