//! Link-local IPv6 crosses a bridge without routing: it follows icc.
use std::time::{Duration, Instant};

use netd_tests::{bed::Bed, cmd::run_timeout};

/// The link-local address of eth0 once duplicate address detection is done.
fn link_local(ns: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run_timeout(
            "ip",
            &[
                "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
            ],
            Duration::from_secs(5),
        );
        let line = out.stdout.lines().next().unwrap_or_default().to_string();
        if !line.is_empty() && !line.contains("tentative") {
            let addr = line.split_whitespace().nth(3).unwrap_or_default();
            return addr.split('/').next().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no usable link-local address in {ns}: {}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ping6(from: &str, to: &str) -> bool {
    let target = format!("{to}%eth0");
    run_timeout(
        "ip",
        &[
            "netns", "exec", from, "ping", "-6", "-c", "1", "-W", "1", &target,
        ],
        Duration::from_secs(5),
    )
    .success()
}

#[test]
fn link_local_ipv6_follows_icc() {
    let bed = Bed::new();
    bed.network("open", &["--subnet", "10.97.1.0/24"]);
    bed.network("closed", &["--subnet", "10.97.2.0/24", "--icc=false"]);
    let a = bed.container("a", &["--network", "open"]);
    let b = bed.container("b", &["--network", "open"]);
    let c = bed.container("c", &["--network", "closed"]);
    let d = bed.container("d", &["--network", "closed"]);
    let (b6, d6) = (link_local(&b.ns), link_local(&d.ns));
    link_local(&a.ns);
    link_local(&c.ns);
    assert!(ping6(&a.ns, &b6), "icc on: link-local IPv6 must pass");
    let before = bed.drop_count("icc-disabled");
    assert!(
        !ping6(&c.ns, &d6),
        "icc off: link-local IPv6 must be dropped"
    );
    assert!(bed.drop_count("icc-disabled") > before);
}
