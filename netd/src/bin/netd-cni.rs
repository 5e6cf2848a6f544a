//! `netd-cni`: the CNI plugin executable (see `netd::cni`).
fn main() {
    std::process::exit(netd::cni::main());
}
