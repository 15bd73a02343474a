//! Regenerates `tests/vectors/mls/*.bin` from real openmls groups:
//! `cargo run -p mimi-proto --example capture_mls_vectors`.

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/mls");
    std::fs::create_dir_all(&dir).expect("create vector directory");
    let a = support::generate();
    for (name, bytes) in support::files(&a) {
        std::fs::write(dir.join(name), bytes).expect("write vector");
        println!("{name}: {} bytes", bytes.len());
    }
}
