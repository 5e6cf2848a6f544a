//! An agent restart (SIGTERM, start again with the same directories) keeps
//! networks, containers and addresses, leaves no orphan interfaces, and the
//! datapath keeps enforcing SPEC section 4 throughout. Every dropped row
//! has a witness: the pinned drop counter (it outlives the agent) grows by
//! what the probes sent, next to a control flow that leaves the same veth.

use netd_tests::traffic::{allow, dropped, icmp, no_icmp};
use netd_tests::Bed;

const ISOLATION: &str = "network-isolation";
/// Echo requests of the `no_icmp` probe while the agent is down.
const DOWN_PINGS: u64 = 2;

#[test]
fn restart_keeps_state_and_isolation() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    bed.network("net2", &["--subnet", "10.91.2.0/24", "--icc=false"]);
    let a = bed.container("a", &["--network", "net1"]);
    let a2 = bed.container("a2", &["--network", "net1", "--ip", "10.91.1.77"]);
    let b = bed.container("b", &["--network", "net2"]);
    let nets = ["bridge", "net1", "net2"];
    let ctrs = ["a", "a2", "b"];
    let before = bed.snapshot(&nets, &ctrs);
    let (a, a2, b) = (bed.ep(&a, "net1"), bed.ep(&a2, "net1"), bed.ep(&b, "net2"));
    assert_eq!(a2.ip.to_string(), "10.91.1.77");

    let isolated = bed.drop_count(ISOLATION);
    let st = bed.stop_agent();
    assert!(st.success(), "agent should exit 0 on SIGTERM, got {st}");

    // While the agent is down the pinned datapath keeps working: a's veth
    // carries its ping to a2 (the control) and drops the one to b.
    let down = [
        icmp(&a.ns, a2.ip).map_err(|e| format!("a -> a2 while stopped: {e:#}")),
        no_icmp(&a.ns, b.ip).map_err(|e| format!("a -> b while stopped: {e:#}")),
    ];
    let errs: Vec<_> = down.into_iter().filter_map(Result::err).collect();
    assert!(errs.is_empty(), "{}", errs.join("\n"));

    bed.start_agent();
    // The pinned programs counted the pings they dropped while no agent ran.
    let grew = bed.drop_count(ISOLATION).saturating_sub(isolated);
    assert!(
        grew >= DOWN_PINGS,
        "drops[{ISOLATION:?}] grew by {grew} while the agent was down, expected at least \
         {DOWN_PINGS} (the pings a -> b); drops = {:?}",
        bed.drops()
    );
    bed.assert_unchanged(&before, &nets, &ctrs, "agent restart");
    bed.expect(&[
        allow(&a, &a2),
        allow(&a2, &a),
        dropped(&a, &b, ISOLATION),
        dropped(&b, &a, ISOLATION),
    ]);

    // The restarted agent still manages what it found: changes work.
    let c = bed.container("c", &["--network", "net1"]);
    let c = bed.ep(&c, "net1");
    bed.expect(&[allow(&c, &a), dropped(&c, &b, ISOLATION)]);
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
