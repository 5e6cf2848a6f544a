//! Builds the eBPF programs (netd-ebpf) with the nightly toolchain and
//! bpf-linker; the agent embeds the object from OUT_DIR.
fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../netd-common/src");
    let package = aya_build::Package {
        name: "netd-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
