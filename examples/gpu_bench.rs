//! Runs the kernel benchmark (what `pai bench kernels [--json]` prints) until the CLI wires it:
//! `cargo run --release --example gpu_bench [-- --json]`.
fn main() -> anyhow::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    if std::env::args().any(|a| a == "--doctor") {
        let r = pai::gpu::doctor::report(None);
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{r}");
        }
        return Ok(());
    }
    let b = pai::gpu::bench::kernels(None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!("{b}");
    }
    Ok(())
}
