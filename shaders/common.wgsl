// Helpers shared by every kernel file (each includes this file first).
// Dispatches may be split over x and y (see Gpu::grid); kernels linearise the workgroup id.

// Invocations per workgroup of the kernels that take one item per invocation. The host reads
// each entry point's size from its `@workgroup_size` (naga reflection), never from a copy.
const WG: u32 = 64u;

fn wg_linear(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

fn nan_f32() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
