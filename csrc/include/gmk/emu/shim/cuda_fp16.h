// Stand-in for the CUDA toolkit header <cuda_fp16.h> in the CPU execution layer (gmk/emu/runtime.h).
// On the include path of the emulation build only (CMake option GMK_BUILD_CUDA_EMU).
#pragma once
#include "gmk/emu/runtime.h"
