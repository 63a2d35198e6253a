// The instruction set the CPU kernels run with, chosen once for the process (internal header).
#pragma once

namespace fusetrain {

enum class CpuIsa { kPortable, kAvx2, kAvx512 };

// The widest set this CPU supports (AVX-512F; AVX2 with FMA; else portable C++), or the one named
// by the environment variable FUSETRAIN_CPU_ISA ("avx512", "avx2", "portable"; read once), so
// every kernel variant can be tested on one machine. Throws std::invalid_argument when the
// variable names no set, or one this CPU lacks: the _core module calls it at import.
CpuIsa cpu_isa();

}  // namespace fusetrain
