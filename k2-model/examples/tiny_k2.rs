//! Writes the tiny Kimi K2-architecture test model (random weights; see
//! `tests/support/tiny_k2.rs`) to a file, for `k2 info`, `k2 chat` and experiments:
//!
//! ```text
//! cargo run -p k2-model --example tiny_k2 -- target/tiny-k2.gguf
//! cargo run -- info --model target/tiny-k2.gguf
//! ```

#[path = "../tests/support/tiny_k2.rs"]
mod tiny_k2;

fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tiny-k2.gguf".to_string());
    tiny_k2::write(std::path::Path::new(&out))?;
    println!("{out}");
    Ok(())
}
