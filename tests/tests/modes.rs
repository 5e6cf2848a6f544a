//! Network modes other than bridge: `none`, `host`, `container:OTHER`.
use netd_tests::{
    bed::Bed,
    traffic::{self, Ep},
};

#[test]
fn container_mode_shares_the_other_containers_endpoints() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.93.1.0/24"]);
    let a = bed.container("a", &["--network", "net1"]);
    let peer = bed.container("peer", &["--network", "net1"]);
    // The sidecar shares a's netns: the agent creates nothing for it.
    let links_before = bed.host_links();
    let side_ns = bed.new_netns("side");
    let side_path = format!("/run/netns/{side_ns}");
    bed.ok(&[
        "container",
        "add",
        "side",
        "--netns",
        &side_path,
        "--network",
        "container:a",
    ]);
    assert_eq!(
        bed.host_links(),
        links_before,
        "container mode created interfaces"
    );
    assert_eq!(
        Bed::links(&side_ns),
        vec!["lo".to_string()],
        "its own netns untouched"
    );
    let side = &bed.json(&["container", "inspect", "side"])[0];
    assert_eq!(side["Mode"], "container:a");
    assert_eq!(side["Networks"]["net1"]["IPAddress"], "10.93.1.2", "{side}");
    // Traffic in a's netns is the sidecar's traffic.
    let a_ip = bed.ip(&a, "net1");
    traffic::reach(&bed.ep(&peer, "net1"), &Ep::new("a", &a.ns, a_ip));
    // Connecting a shared-netns container to a network is refused.
    let err = bed.fail(&["network", "connect", "net1", "side"]);
    assert!(err.contains("cannot be connected"), "{err}");
    // A container cannot share a container that itself shares.
    let err = bed.fail(&[
        "container",
        "add",
        "side2",
        "--netns",
        &side_path,
        "--network",
        "container:side",
    ]);
    assert!(err.contains("shares another"), "{err}");
    // Removing a removes the sidecar with it.
    bed.ok(&["container", "rm", "a"]);
    let names = bed.ok(&["container", "ls", "--format", "json"]);
    assert!(
        !names.contains("\"side\""),
        "sidecar outlived its owner: {names}"
    );
    assert!(names.contains("\"peer\""));
}

#[test]
fn host_and_none_modes() {
    let bed = Bed::new();
    let links_before = bed.host_links();
    let h_ns = bed.new_netns("h");
    let h_path = format!("/run/netns/{h_ns}");
    bed.ok(&[
        "container",
        "add",
        "h",
        "--netns",
        &h_path,
        "--network",
        "host",
    ]);
    assert_eq!(
        bed.host_links(),
        links_before,
        "host mode created interfaces"
    );
    assert_eq!(bed.json(&["container", "inspect", "h"])[0]["Mode"], "host");
    let n = bed.container("n", &["--network", "none"]);
    assert_eq!(Bed::links(&n.ns), vec!["lo".to_string()]);
    let err = bed.fail(&[
        "container",
        "add",
        "p",
        "--netns",
        &h_path,
        "--network",
        "none",
        "-p",
        "80",
    ]);
    assert!(err.contains("needs a network"), "{err}");
    let err = bed.fail(&[
        "container",
        "add",
        "q",
        "--netns",
        &h_path,
        "--network",
        "host",
        "--ip",
        "10.0.0.2",
    ]);
    assert!(err.contains("--ip"), "{err}");
    bed.ok(&["container", "rm", "h", "n"]);
    assert_eq!(bed.host_links(), links_before);
}
