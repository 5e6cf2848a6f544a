//! The CLI contract: what a container's netns looks like, the inspect shapes,
//! and bad input — every refusal is one clear `netd: error:` line, a non-zero
//! exit, and no change to the agent's state or the host's interfaces.

use netd_tests::cmd::ip_ns;
use netd_tests::Bed;
use serde_json::Value;

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let s = ip_ns(ns, &all).unwrap_or_else(|e| panic!("{e:#}"));
    serde_json::from_str(&s).unwrap()
}

fn link<'a>(addrs: &'a Value, name: &str) -> &'a Value {
    addrs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == name)
        .unwrap_or_else(|| panic!("no {name} in {addrs}"))
}

fn v4(l: &Value) -> Vec<String> {
    l["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn container_netns_layout_and_inspect() {
    let bed = Bed::new();
    let id1 = bed.network(
        "net1",
        &["--subnet", "10.91.1.0/24", "--label", "team=blue"],
    );
    bed.network("net2", &["--subnet", "10.91.2.0/24"]);
    let c = bed.container("c", &["--network", "net1"]);
    bed.ok(&["network", "connect", "net2", "c"]);
    let ip1 = bed.ip(&c, "net1");
    let ip2 = bed.ip(&c, "net2");
    let o1 = ip1.octets();

    // Inside the netns: eth0 then eth1, addresses, MACs from addresses, lo up.
    let addrs = ip_json(&c.ns, &["addr", "show"]);
    let lo = link(&addrs, "lo");
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo should be up: {lo}"
    );
    let eth0 = link(&addrs, "eth0");
    let eth1 = link(&addrs, "eth1");
    assert_eq!(v4(eth0), vec![format!("{ip1}/24")]);
    assert_eq!(v4(eth1), vec![format!("{ip2}/24")]);
    let mac0 = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        o1[0], o1[1], o1[2], o1[3]
    );
    assert_eq!(eth0["address"], mac0.as_str());
    let routes = ip_json(&c.ns, &["route", "show", "default"]);
    assert_eq!(
        routes[0]["gateway"], "10.91.1.1",
        "default route via net1's gateway: {routes}"
    );

    // container inspect.
    let ci = bed.ctr_info("c");
    assert_eq!(ci["Name"], "c");
    assert_eq!(ci["Id"], c.id.as_str());
    assert_eq!(ci["NetnsPath"], c.netns_path.as_str());
    let n1 = &ci["Networks"]["net1"];
    assert_eq!(n1["Interface"], "eth0", "{ci}");
    assert_eq!(ci["Networks"]["net2"]["Interface"], "eth1", "{ci}");
    assert_eq!(n1["Gateway"], "10.91.1.1");
    assert_eq!(n1["PrefixLen"], 24);
    assert_eq!(n1["MacAddress"], mac0.as_str());
    let host_if = n1["HostInterface"].as_str().expect("HostInterface");
    assert!(
        bed.host_links().iter().any(|l| l == host_if),
        "host veth {host_if} not in host netns: {:?}",
        bed.host_links()
    );

    // network inspect.
    let ni = bed.net_info("net1");
    assert_eq!(ni["Name"], "net1");
    assert_eq!(ni["Id"], id1.as_str());
    assert_eq!(ni["Driver"], "bridge");
    assert_eq!(ni["Internal"], false);
    assert_eq!(ni["IPAM"]["Config"][0]["Subnet"], "10.91.1.0/24");
    assert_eq!(ni["IPAM"]["Config"][0]["Gateway"], "10.91.1.1");
    assert_eq!(ni["Labels"]["team"], "blue");
    let br = format!("br-{}", &id1[..12]);
    assert_eq!(ni["Options"]["com.docker.network.bridge.name"], br.as_str());
    assert!(
        bed.host_links().contains(&br),
        "bridge {br} missing in host netns"
    );
    let entry = &ni["Containers"][c.id.as_str()];
    assert_eq!(entry["Name"], "c", "{ni}");
    assert_eq!(entry["IPv4Address"], format!("{ip1}/24").as_str());

    // Defaults: the bridge network, and a pool subnet when none is given.
    let b = bed.net_info("bridge");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(b["Options"]["com.docker.network.bridge.name"], "netd0");
    assert!(bed.host_links().iter().any(|l| l == "netd0"));
    bed.network("pooled", &[]);
    assert_eq!(
        bed.net_info("pooled")["IPAM"]["Config"][0]["Subnet"],
        "172.18.0.0/16"
    );

    // --network none: only lo, up.
    let n = bed.container("n", &["--network", "none"]);
    assert_eq!(Bed::links(&n.ns), vec!["lo".to_string()]);

    // Removal gives the interfaces back.
    bed.ok(&["container", "rm", "c"]);
    assert!(!bed.host_links().iter().any(|l| l == host_if));
    assert_eq!(Bed::links(&c.ns), vec!["lo".to_string()]);
}

/// Runs every case (all of them, even after a failure), then reports all
/// problems at once: not refused cleanly, unclear message, state changed.
fn check_refused(bed: &Bed, nets: &[&str], ctrs: &[&str], cases: &[(&[&str], &str)]) {
    let before = bed.snapshot(nets, ctrs);
    let mut errs = Vec::new();
    for (args, word) in cases {
        let cmd = format!("`netd {}`", args.join(" "));
        match bed.refusal(args) {
            Ok(line) if !line.to_lowercase().contains(&word.to_lowercase()) => {
                errs.push(format!("{cmd}: error should mention {word:?}: {line}"))
            }
            Ok(_) => {}
            Err(e) => errs.push(format!("{cmd}: {e}")),
        }
        if let Err(e) = bed.check_unchanged(&before, nets, ctrs, &cmd) {
            errs.push(e);
            break; // later cases would all report the same change
        }
    }
    assert!(
        errs.is_empty(),
        "{} bad-input problems:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn network_create_bad_input_is_refused_without_change() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    check_refused(
        &bed,
        &["bridge", "net1"],
        &[],
        &[
            (
                &["network", "create", "x", "--subnet", "10.91.0.0/16"],
                "overlap",
            ),
            (
                &["network", "create", "x", "--subnet", "10.91.1.128/25"],
                "overlap",
            ),
            (
                &["network", "create", "x", "--subnet", "172.17.5.0/24"],
                "overlap",
            ),
            (
                &["network", "create", "x", "--subnet", "10.91.9.0/33"],
                "subnet",
            ),
            (&["network", "create", "x", "--subnet", "banana"], "subnet"),
            (
                &["network", "create", "x", "--subnet", "300.1.1.0/24"],
                "subnet",
            ),
            (
                &[
                    "network",
                    "create",
                    "x",
                    "--subnet",
                    "10.91.9.0/24",
                    "--gateway",
                    "10.91.8.1",
                ],
                "gateway",
            ),
            (
                &["network", "create", "net1", "--subnet", "10.91.9.0/24"],
                "net1",
            ),
            (
                &["network", "create", "bridge", "--subnet", "10.91.9.0/24"],
                "bridge",
            ),
        ],
    );
}

#[test]
fn container_bad_input_is_refused_without_change() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    let a = bed.container("a", &["--network", "net1"]);
    let taken = bed.ip(&a, "net1").to_string();
    // A fresh netns the refused commands point at: it must stay empty.
    let x_ns = bed.new_netns("x");
    let x = netd_tests::netns::path_of(&x_ns).display().to_string();
    let missing = format!("/run/netns/nt-{}-missing", bed.id());
    check_refused(
        &bed,
        &["bridge", "net1"],
        &["a"],
        &[
            // Unknown network.
            (
                &[
                    "container",
                    "add",
                    "x",
                    "--netns",
                    &x,
                    "--network",
                    "nosuch",
                ],
                "nosuch",
            ),
            (&["network", "connect", "nosuch", "a"], "nosuch"),
            (&["network", "disconnect", "nosuch", "a"], "nosuch"),
            (&["network", "inspect", "nosuch"], "nosuch"),
            (&["network", "rm", "nosuch"], "nosuch"),
            // Unknown container.
            (&["container", "rm", "ghost"], "ghost"),
            (&["container", "inspect", "ghost"], "ghost"),
            (&["network", "connect", "net1", "ghost"], "ghost"),
            (&["network", "disconnect", "net1", "ghost"], "ghost"),
            // Static address outside the subnet, or taken.
            (
                &[
                    "container",
                    "add",
                    "x",
                    "--netns",
                    &x,
                    "--network",
                    "net1",
                    "--ip",
                    "10.91.2.5",
                ],
                "10.91.2.5",
            ),
            (
                &["network", "connect", "--ip", "10.91.9.9", "bridge", "a"],
                "10.91.9.9",
            ),
            (
                &[
                    "container",
                    "add",
                    "x",
                    "--netns",
                    &x,
                    "--network",
                    "net1",
                    "--ip",
                    &taken,
                ],
                &taken,
            ),
            // A netns path that does not exist.
            (&["container", "add", "x", "--netns", &missing], "netns"),
            // A name already in use.
            (&["container", "add", "a", "--netns", &x], "a"),
        ],
    );
    assert_eq!(
        Bed::links(&x_ns),
        vec!["lo".to_string()],
        "refused commands left interfaces in the target netns"
    );
    assert_eq!(
        Bed::links(&a.ns),
        vec!["eth0".to_string(), "lo".to_string()]
    );
}

#[test]
fn rm_of_network_in_use_names_the_container() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    bed.container("busy", &["--network", "net1"]);
    check_refused(
        &bed,
        &["bridge", "net1"],
        &["busy"],
        &[(&["network", "rm", "net1"], "busy")],
    );
    let br = bed.net_info("net1")["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    bed.ok(&["container", "rm", "busy"]);
    bed.ok(&["network", "rm", "net1"]);
    assert!(
        !bed.host_links().contains(&br),
        "bridge {br} should be gone after network rm"
    );
    let ls = bed.ok(&["network", "ls", "-q"]);
    assert_eq!(
        ls.lines().count(),
        1,
        "only the default network should remain: {ls}"
    );
}
