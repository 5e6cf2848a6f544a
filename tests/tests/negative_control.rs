//! Isolation is the programs' work: with the agent dead the pinned TCX links
//! keep dropping cross-network traffic; once the link pins are removed (the
//! programs detach) the same traffic flows, since the host forwards.

use netd_tests::traffic::{allow, deny, expect};
use netd_tests::Bed;

#[test]
fn isolation_lives_in_the_pinned_programs() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    bed.network("net2", &["--subnet", "10.91.2.0/24"]);
    let a = bed.container("a", &["--network", "net1"]);
    let b = bed.container("b", &["--network", "net2"]);
    let (a, b) = (bed.ep(&a, "net1"), bed.ep(&b, "net2"));
    let fwd = Bed::sysctl(bed.host_ns(), "net.ipv4.ip_forward").unwrap();
    assert_eq!(fwd, "1", "the agent should enable ip_forward in its netns");

    // 1. Agent running: dropped.
    expect(&[deny(&a, &b), deny(&b, &a)]);

    // 2. Agent killed: still dropped by the pinned links.
    let links = bed.pinned_links();
    assert!(
        !links.is_empty(),
        "expected pinned TCX links under {}/v1/links",
        bed.bpffs().display()
    );
    bed.kill_agent();
    expect(&[deny(&a, &b), deny(&b, &a)]);

    // 3. Link pins removed: nothing holds the programs any more, they
    // detach, and the kernel forwards between the bridges.
    bed.remove_pinned_links();
    assert!(bed.pinned_links().is_empty());
    expect(&[allow(&a, &b), allow(&b, &a)]);
}
