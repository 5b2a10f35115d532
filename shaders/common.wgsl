// Helpers shared by every kernel family (prepended to each file at build time).
// Dispatches may be split over x and y (see Gpu::grid); kernels linearise the workgroup id.

fn wg_linear(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

fn nan_f32() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
