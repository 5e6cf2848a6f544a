//! An agent restart (SIGTERM, start again with the same directories) keeps
//! networks, containers and addresses, leaves no orphan interfaces, and the
//! datapath keeps enforcing SPEC section 4 throughout, IPv4 and IPv6 (the
//! networks are dual-stack). Every dropped row has a witness: the pinned
//! drop counter (it outlives the agent, and is read from its pin while no
//! agent runs) grows by what the probes of each family sent, next to a
//! control flow that leaves the same veth.

use netd_common::DropReason;
use netd_tests::traffic::{allow, dropped, icmp, no_icmp};
use netd_tests::Bed;

const ISOLATION: &str = "network-isolation";
/// Echo requests of the `no_icmp` probe while the agent is down.
const DOWN_PINGS: u64 = 2;

#[test]
fn restart_keeps_state_and_isolation() {
    let bed = Bed::new();
    let v6 = |s| ["--ipv6", "--subnet", s];
    bed.network(
        "net1",
        &[&["--subnet", "10.91.1.0/24"][..], &v6("fd00:91:1::/64")].concat(),
    );
    bed.network(
        "net2",
        &[
            &["--subnet", "10.91.2.0/24", "--icc=false"][..],
            &v6("fd00:91:2::/64"),
        ]
        .concat(),
    );
    let a = bed.container("a", &["--network", "net1"]);
    let a2 = bed.container("a2", &["--network", "net1", "--ip", "10.91.1.77"]);
    let b = bed.container("b", &["--network", "net2"]);
    let nets = ["bridge", "net1", "net2"];
    let ctrs = ["a", "a2", "b"];
    let before = bed.snapshot(&nets, &ctrs);
    let (a6, a26, b6) = (
        bed.ep6(&a, "net1"),
        bed.ep6(&a2, "net1"),
        bed.ep6(&b, "net2"),
    );
    let (a, a2, b) = (bed.ep(&a, "net1"), bed.ep(&a2, "net1"), bed.ep(&b, "net2"));
    assert_eq!(a2.ip.to_string(), "10.91.1.77");

    let isolated = bed.drop_count(ISOLATION);
    let st = bed.stop_agent();
    assert!(st.success(), "agent should exit 0 on SIGTERM, got {st}");

    // While the agent is down the pinned datapath keeps working: a's veth
    // carries its pings to a2 (the control) and drops the ones to b, each
    // family counted on its own.
    let mut errs = Vec::new();
    for (ctl, deny) in [(&a2, &b), (&a26, &b6)] {
        if let Err(e) = icmp(&a.ns, ctl.ip) {
            errs.push(format!("{a} -> {ctl} while stopped: {e:#}"));
        }
        let was = bed.pinned_drops(DropReason::Isolation);
        if let Err(e) = no_icmp(&a.ns, deny.ip) {
            errs.push(format!("{a} -> {deny} while stopped: {e:#}"));
        }
        let grew = bed.pinned_drops(DropReason::Isolation).saturating_sub(was);
        if grew < DOWN_PINGS {
            errs.push(format!(
                "while stopped, drops[{ISOLATION:?}] grew by {grew} for the pings a -> {deny}, \
                 expected at least {DOWN_PINGS}"
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));

    bed.start_agent();
    // The restarted agent shows what the pinned programs counted while no
    // agent ran.
    let grew = bed.drop_count(ISOLATION).saturating_sub(isolated);
    assert!(
        grew >= 2 * DOWN_PINGS,
        "drops[{ISOLATION:?}] grew by {grew} while the agent was down, expected at least \
         {} (the pings a -> b, both families); drops = {:?}",
        2 * DOWN_PINGS,
        bed.drops()
    );
    bed.assert_unchanged(&before, &nets, &ctrs, "agent restart");
    bed.expect(&[
        allow(&a, &a2),
        allow(&a2, &a),
        allow(&a6, &a26),
        dropped(&a, &b, ISOLATION),
        dropped(&b, &a, ISOLATION),
        dropped(&a6, &b6, ISOLATION),
        dropped(&b6, &a6, ISOLATION),
    ]);

    // The restarted agent still manages what it found: changes work.
    let c = bed.container("c", &["--network", "net1"]);
    let (c, c6) = (bed.ep(&c, "net1"), bed.ep6(&c, "net1"));
    bed.expect(&[
        allow(&c, &a),
        allow(&c6, &a6),
        dropped(&c, &b, ISOLATION),
        dropped(&c6, &b6, ISOLATION),
    ]);
    let a2_if = bed.ctr_info("a2")["Networks"]["net1"]["HostInterface"]
        .as_str()
        .expect("HostInterface")
        .to_string();
    assert!(bed.host_links().contains(&a2_if));
    bed.ok(&["container", "rm", "a2"]);
    assert!(
        !bed.host_links().contains(&a2_if),
        "host veth {a2_if} of a2 left behind after rm (after restart)"
    );
    bed.ok(&["network", "disconnect", "net1", "c"]);
    bed.ok(&["container", "rm", "c"]);
}
