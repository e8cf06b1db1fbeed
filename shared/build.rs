//! Compiles `../proto/*.proto` with protox (pure Rust, no `protoc` needed) and
//! generates the tonic clients and servers every service shares.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../proto/product.proto", "../proto/order.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["../proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
