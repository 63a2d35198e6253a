// The instruction set the CPU kernels run with, chosen once for the process (internal header).
#pragma once

namespace fusetrain {

enum class CpuIsa { kPortable, kAvx2, kAvx512 };

// The widest set this CPU supports (AVX-512F; AVX2 with FMA; else portable C++), or a narrower
// one named by the environment variable FUSETRAIN_CPU_ISA ("avx2", "portable"; read once), so
// every kernel variant can be tested on one machine.
CpuIsa cpu_isa();

}  // namespace fusetrain
