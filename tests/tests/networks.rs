//! Network options end to end: MTU, ip-range, gateway, static addresses,
//! bridge names, pools around host routes, prune.
use std::net::Ipv4Addr;

use netd_tests::{
    bed::Bed,
    cmd::ip_ns,
    traffic::{self, Ep},
};

fn mtu_of(ns: &str, dev: &str) -> u32 {
    let out = ip_ns(ns, &["-j", "link", "show", "dev", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["mtu"].as_u64().unwrap() as u32
}

fn default_via(ns: &str) -> String {
    ip_ns(ns, &["route", "show", "default"]).unwrap()
}

#[test]
fn mtu_range_gateway_static_ip_and_bridge_name() {
    let bed = Bed::new();
    bed.network(
        "opts",
        &[
            "--subnet",
            "10.98.1.0/24",
            "--ip-range",
            "10.98.1.128/25",
            "--gateway",
            "10.98.1.254",
            "--mtu",
            "1400",
            "--bridge",
            "ndtestbr0",
        ],
    );
    assert!(
        bed.host_links().iter().any(|l| l == "ndtestbr0"),
        "{:?}",
        bed.host_links()
    );
    assert_eq!(mtu_of(bed.host_ns(), "ndtestbr0"), 1400);
    let a = bed.container("a", &["--network", "opts"]);
    assert_eq!(
        bed.ip(&a, "opts"),
        Ipv4Addr::new(10, 98, 1, 128),
        "first address of the range"
    );
    assert_eq!(mtu_of(&a.ns, "eth0"), 1400);
    assert!(
        default_via(&a.ns).contains("via 10.98.1.254"),
        "{}",
        default_via(&a.ns)
    );
    // A static address outside the range but inside the subnet is fine.
    let b = bed.container("b", &["--network", "opts", "--ip", "10.98.1.20"]);
    assert_eq!(bed.ip(&b, "opts"), Ipv4Addr::new(10, 98, 1, 20));
    traffic::reach_both(&bed.ep(&a, "opts"), &bed.ep(&b, "opts"));
    // Docker's driver options work as the flags they mirror.
    bed.network(
        "viaopts",
        &[
            "--subnet",
            "10.98.3.0/24",
            "-o",
            "com.docker.network.bridge.name=ndoptbr0",
            "-o",
            "com.docker.network.driver.mtu=1450",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
        ],
    );
    let info = bed.net_info("viaopts");
    assert_eq!(
        info["Options"]["com.docker.network.bridge.enable_icc"], "false",
        "{info}"
    );
    assert_eq!(mtu_of(bed.host_ns(), "ndoptbr0"), 1450);
    let err = bed.fail(&[
        "network",
        "create",
        "bad",
        "-o",
        "com.docker.network.bridge.enable_icc=maybe",
    ]);
    assert!(err.contains("true or false"), "{err}");
    // The gateway answers from its custom address.
    traffic::reach(
        &bed.ep(&a, "opts"),
        &Ep::new("host", bed.host_ns(), Ipv4Addr::new(10, 98, 1, 254)),
    );
}

#[test]
fn pools_skip_host_routes_and_prune_keeps_what_is_used() {
    let bed = Bed::without_agent(&[]);
    // The host already routes 172.17.0.0/16 and 172.18.0.0/16 elsewhere.
    // (no dummy module on this kernel: a veth pair serves)
    ip_ns(
        bed.host_ns(),
        &[
            "link", "add", "hostdum0", "type", "veth", "peer", "name", "hostdum1",
        ],
    )
    .unwrap();
    ip_ns(bed.host_ns(), &["link", "set", "hostdum0", "up"]).unwrap();
    ip_ns(
        bed.host_ns(),
        &["route", "add", "172.17.0.0/16", "dev", "hostdum0"],
    )
    .unwrap();
    ip_ns(
        bed.host_ns(),
        &["route", "add", "172.18.0.0/16", "dev", "hostdum0"],
    )
    .unwrap();
    bed.start_agent();
    let default = bed.net_info("bridge");
    assert_eq!(
        default["IPAM"]["Config"][0]["Subnet"], "172.19.0.0/16",
        "{default}"
    );
    bed.network("p1", &[]);
    bed.network("p2", &[]);
    assert_eq!(
        bed.net_info("p1")["IPAM"]["Config"][0]["Subnet"],
        "172.20.0.0/16"
    );
    assert_eq!(
        bed.net_info("p2")["IPAM"]["Config"][0]["Subnet"],
        "172.21.0.0/16"
    );
    let err = bed.fail(&["network", "create", "x", "--subnet", "172.18.5.0/24"]);
    assert!(err.contains("overlaps"), "{err}");
    bed.container("c", &["--network", "p1"]);
    // Without -f, prune asks; no answer (stdin closed) is a no.
    let err = bed.fail(&["network", "prune"]);
    assert!(err.contains("cancelled"), "{err}");
    let pruned = bed.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned.trim(), "p2", "only the unused user network goes");
    let names = bed.ok(&["network", "ls", "--format", "json"]);
    assert!(
        names.contains("\"p1\"") && names.contains("\"bridge\"") && !names.contains("\"p2\""),
        "{names}"
    );
    let err = bed.fail(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined"), "{err}");
}
