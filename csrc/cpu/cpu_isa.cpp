// cpu_isa(): the run-time choice of instruction set shared by the tile kernels and Philox.
#include "cpu_isa.h"

#include <cstdlib>
#include <string>

namespace fusetrain {

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("FUSETRAIN_CPU_ISA");
    const std::string want = env ? env : "";
#if defined(__x86_64__) || defined(__i386__)
    if (want != "avx2" && want != "portable" && __builtin_cpu_supports("avx512f")) return CpuIsa::kAvx512;
    if (want != "portable" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
    return CpuIsa::kPortable;
  }();
  return isa;
}

}  // namespace fusetrain
