//! Crash points for fault-injection tests: with `NETD_CRASH_AT=<point>` in
//! its environment, the agent aborts (as a kill -9 would stop it) when it
//! reaches that point of a multi-step operation. Unset, a point costs one
//! environment lookup.
pub fn point(name: &str) {
    if std::env::var_os("NETD_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("netd: crash point {name} reached (NETD_CRASH_AT)");
        std::process::abort();
    }
}

/// Every crash point, in the order an operation reaches them.
pub const POINTS: &[&str] = &[
    "network-create:bridge",
    "network-create:datapath",
    "endpoint:veth",
    "endpoint:configured",
    "endpoint:attached",
    "container-add:plumbed",
    "container-add:published",
    "container-rm:unpublished",
    "container-rm:unplumbed",
    "disconnect:unplumbed",
];
