//! GPU runtime (wgpu): device, buffers, kernels.
