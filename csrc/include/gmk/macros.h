// Portable qualifiers shared by host (CPU) and device (CUDA) code. No torch headers here:
// this file is included by .cu kernels that are compiled with the plain CUDA toolkit.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GMK_HOST_DEVICE __host__ __device__
#define GMK_DEVICE __device__
#define GMK_FORCEINLINE __forceinline__
#else
#define GMK_HOST_DEVICE
#define GMK_DEVICE
#define GMK_FORCEINLINE inline __attribute__((always_inline))
#endif

#define GMK_HD_INLINE GMK_HOST_DEVICE GMK_FORCEINLINE
