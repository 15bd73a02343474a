//! Compiles the Wire GenericMessage subset with prost and protox (pure Rust, no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schemas/wire.proto");
    let fds = protox::compile(["schemas/wire.proto"], ["schemas"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
