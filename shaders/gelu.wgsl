// GELU (tanh approximation) and its derivative, shared by the elementwise kernels and the
// matmul epilogue so that the fused and the separate dispatches compute the same values.
//
// gelu(v)      = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
// gelu_grad(v) = 0.5 (1 + t) + 0.5 v (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 v^2),  t = tanh(...)

const GELU_S: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

// tanh without overflow: sign(u) (1 - e) / (1 + e), e = exp(-2|u|).
fn tanh_stable(u: f32) -> f32 {
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + tanh_stable(GELU_S * (v + GELU_A * v * v * v)));
}

fn gelu_grad(v: f32) -> f32 {
    let t = tanh_stable(GELU_S * (v + GELU_A * v * v * v));
    return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
}
