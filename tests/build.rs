//! Compiles the source hash of netd (netd/source_hash.rs) into the harness
//! as `NETD_SOURCE_HASH`: the harness refuses a netd binary whose `netd
//! version` shows another hash, i.e. one built from other sources.
#[path = "../netd/source_hash.rs"]
mod source_hash;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    source_hash::rerun_if_changed(&root);
    println!(
        "cargo::rustc-env=NETD_SOURCE_HASH={}",
        source_hash::source_hash(&root)
    );
}
