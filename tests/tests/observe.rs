//! Observability (issue 15): `/metrics` on the API socket and over TCP,
//! and `netd explain`, checked against real traffic.
//!
//! Every explain row is run twice: through `netd explain` (test runs of the
//! loaded programs on a copy of the maps) and as real packets between the
//! namespaces; the verdicts must agree, and explaining must leave the live
//! conntrack maps and drop counters as they were.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netd_tests::http::{get_tcp, get_unix};
use netd_tests::ports::{ask_from, sa, PortServer, P};
use netd_tests::traffic::{icmp, no_icmp, no_tcp, tcp};
use netd_tests::wait::wait_for;
use netd_tests::{Bed, Ep};
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;

/// Checks the text line by line as the exposition format demands (every
/// sample belongs to a family announced by `# TYPE`, names and values
/// well formed), then parses it with a Prometheus text parser.
fn parse_metrics(text: &str) -> Scrape {
    let mut typed: HashSet<String> = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split_whitespace();
            let (name, kind) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad TYPE line {line:?}"
            );
            assert!(typed.insert(name.to_string()), "family {name} twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.trim().is_empty(), "empty line in the exposition");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value in {line:?}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && name.starts_with("netd_"),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without TYPE: {line:?}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text parser")
}

fn metrics(bed: &Bed) -> Scrape {
    let r = get_unix(&bed.socket(), "/metrics").expect("GET /metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "content type: {r:?}"
    );
    parse_metrics(&r.body)
}

/// The value of `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

fn drops_metric(s: &Scrape, reason: &str) -> u64 {
    value(s, "netd_drops_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no netd_drops_total{{reason={reason:?}}}")) as u64
}

#[test]
fn metrics_parse_and_match_status() {
    let bed = Bed::new();
    bed.network("m1", &["--subnet", "10.95.1.0/24"]);
    bed.network("m2", &["--subnet", "10.95.2.0/24"]);
    let a = bed.container("a", &["--network", "m1"]);
    let b = bed.container("b", &["--network", "m2"]);
    let before = metrics(&bed);
    let isolation_before = drops_metric(&before, "network-isolation");
    // Three echo requests that the datapath drops.
    no_icmp(&a.ns, bed.ip(&b, "m2")).unwrap();
    let status_before = bed.drop_count("network-isolation");
    let m = metrics(&bed);
    let status_after = bed.drop_count("network-isolation");
    let from_metrics = drops_metric(&m, "network-isolation");
    assert!(
        status_before <= from_metrics && from_metrics <= status_after,
        "netd_drops_total{{reason=\"network-isolation\"}} = {from_metrics}, status said \
         {status_before} before and {status_after} after"
    );
    assert!(
        from_metrics >= isolation_before + 2,
        "dropped pings did not count: {isolation_before} -> {from_metrics}"
    );
    for reason in [
        "malformed",
        "icc-disabled",
        "not-a-reply",
        "snat-ports-exhausted",
    ] {
        drops_metric(&m, reason);
    }
    for (map, entries) in [("ENDPOINTS", 2.0), ("NETWORKS", 3.0)] {
        assert_eq!(
            value(&m, "netd_map_entries", &[("map", map)]),
            Some(entries),
            "netd_map_entries{{map={map:?}}}"
        );
    }
    for map in ["CT_OUT", "CT_IN", "CT_LOCAL", "PUBLISHED"] {
        assert!(
            value(&m, "netd_map_entries", &[("map", map)]).is_some(),
            "{map}"
        );
        assert!(
            value(&m, "netd_map_capacity", &[("map", map)]).is_some_and(|c| c > 0.0),
            "{map}"
        );
    }
    assert_eq!(value(&m, "netd_containers", &[]), Some(2.0));
    assert!(value(&m, "netd_reconcile_runs_total", &[]).is_some_and(|n| n >= 1.0));
    assert!(value(&m, "netd_dns_queries_total", &[("answer", "nxdomain")]).is_some());
    // The CLI's own calls are timed under their route patterns.
    let status_calls = value(
        &m,
        "netd_api_request_duration_seconds",
        &[("method", "GET"), ("route", "/v1/status")],
    )
    .expect("latency histogram of GET /v1/status");
    assert!(status_calls >= 1.0, "{status_calls}");
    // Label values may hold braces; the text parser above splits labels
    // naively, so this one is read from the text itself.
    let text = get_unix(&bed.socket(), "/metrics").unwrap().body;
    assert!(
        text.contains(
            "netd_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/containers/{name}\"} "
        ),
        "container inspect is timed under its route pattern, not per name:\n{text}"
    );
}

#[test]
fn metrics_over_tcp_serve_only_metrics() {
    let port = 20000 + (rand::random::<u16>() % 20000);
    let listen = format!("127.0.0.1:{port}");
    let bed = Bed::with_daemon_args(&["--metrics", &listen]);
    let addr: SocketAddr = listen.parse().unwrap();
    let r = get_tcp(bed.host_ns(), addr, "/metrics").expect("GET /metrics over TCP");
    assert_eq!(r.status, 200, "{r:?}");
    let m = parse_metrics(&r.body);
    assert_eq!(
        drops_metric(&m, "network-isolation"),
        bed.drop_count("network-isolation")
    );
    // The API itself stays on the Unix socket.
    for path in ["/v1/status", "/v1/networks"] {
        let r = get_tcp(bed.host_ns(), addr, path).unwrap();
        assert_eq!(r.status, 404, "{path} over TCP: {r:?}");
    }
}

/// `netd explain SRC DST --format json`.
fn explain(bed: &Bed, src: &str, dst: &str) -> Json {
    bed.json(&["explain", src, dst, "--format", "json"])
}

/// Conntrack fill and the drop counters explain could move.
fn live_state(bed: &Bed) -> BTreeMap<String, u64> {
    let m = metrics(bed);
    let mut out = BTreeMap::new();
    for map in ["CT_OUT", "CT_IN", "CT_LOCAL", "FRAGMENTS"] {
        let n = value(&m, "netd_map_entries", &[("map", map)]).unwrap();
        out.insert(map.to_string(), n as u64);
    }
    for reason in [
        "network-isolation",
        "internal-network",
        "not-a-reply",
        "ct-insert-failed",
    ] {
        out.insert(reason.to_string(), drops_metric(&m, reason));
    }
    out
}

fn dropped(v: &Json) -> Option<(&str, &str)> {
    (v["verdict"] == "dropped").then(|| {
        (
            v["reason"].as_str().unwrap_or("?"),
            v["hook"].as_str().unwrap_or("?"),
        )
    })
}

/// SRC, DST, and the (reason, hook) of the drop, or None for delivered.
type Row<'a> = (&'a str, String, Option<(&'a str, &'a str)>);

#[test]
fn explain_agrees_with_real_traffic_and_leaves_conntrack_alone() {
    let (bed, world) = Bed::with_world(&[]);
    bed.network("ea", &["--subnet", "10.96.1.0/24"]);
    bed.network("eb", &["--subnet", "10.96.2.0/24"]);
    bed.network("closed", &["--subnet", "10.96.3.0/24", "--icc=false"]);
    bed.network("inner", &["--subnet", "10.96.4.0/24", "--internal"]);
    let a1 = bed.container("a1", &["--network", "ea", "-p", "8080:80"]);
    let a2 = bed.container("a2", &["--network", "ea"]);
    let b1 = bed.container("b1", &["--network", "eb"]);
    let c1 = bed.container("c1", &["--network", "closed"]);
    let c2 = bed.container("c2", &["--network", "closed"]);
    let i1 = bed.container("i1", &["--network", "inner"]);
    let i2 = bed.container("i2", &["--network", "inner"]);
    let w = Ipv4Addr::new(203, 0, 113, 1);
    let uplink = Ipv4Addr::new(203, 0, 113, 2);
    let gw_b = bed.gateway("eb");
    let a1_ip = bed.ip(&a1, "ea");

    // Explain every row first, while no flow is tracked: a walk that wrote
    // to the live maps would leave conntrack entries behind.
    let before = live_state(&bed);
    let rows: Vec<Row> = vec![
        ("a1", "a2:80".into(), None),
        (
            "a1",
            "b1:80".into(),
            Some(("network-isolation", "from_container")),
        ),
        (
            "b1",
            "a1".into(),
            Some(("network-isolation", "from_container")),
        ),
        (
            "c1",
            "c2:80".into(),
            Some(("icc-disabled", "from_container")),
        ),
        ("c1", "host".into(), None),
        ("i1", "i2:80".into(), None),
        (
            "i1",
            format!("{w}:80"),
            Some(("internal-network", "from_container")),
        ),
        ("a1", format!("{w}:80"), None),
        ("b1", format!("{gw_b}:8080"), None),
        (
            "world",
            format!("{a1_ip}:80"),
            Some(("not-a-reply", "uplink_xdp")),
        ),
        ("world", format!("{uplink}:8080"), None),
    ];
    let mut explained = Vec::new();
    for (src, dst, want) in &rows {
        let v = explain(&bed, src, dst);
        assert_eq!(dropped(&v), *want, "explain {src} {dst}: {v:#}");
        explained.push(v);
    }
    let after = live_state(&bed);
    assert_eq!(before, after, "explain changed live conntrack or counters");
    assert!(after["CT_OUT"] == 0 && after["CT_LOCAL"] == 0, "{after:?}");

    let text = bed.ok(&["explain", "a1", "b1:80"]);
    assert!(
        text.contains("from_container")
            && text.ends_with("dropped by from_container: network-isolation"),
        "{text}"
    );
    eprintln!(
        "{text}\n{}",
        bed.ok(&["explain", "b1", &format!("{gw_b}:8080")])
    );

    // What the walks say about translations.
    let masq = &explained[7];
    assert_eq!(masq["delivered"]["kind"], "world", "{masq:#}");
    let hooks: Vec<&str> = masq["walk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hook"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, ["from_container", "uplink_out"], "{masq:#}");
    let snat = &masq["walk"][1]["rewrites"][0];
    assert_eq!(snat["kind"], "snat", "{masq:#}");
    assert!(
        snat["to"].as_str().unwrap().starts_with("203.0.113.2:"),
        "{masq:#}"
    );
    let published = &explained[8];
    assert_eq!(published["delivered"]["container"], "a1", "{published:#}");
    let dnat = &published["walk"][0]["rewrites"][0];
    assert_eq!(dnat["kind"], "dnat", "{published:#}");
    assert_eq!(dnat["to"], format!("{a1_ip}:80"), "{published:#}");
    let from_world = &explained[10];
    assert_eq!(from_world["delivered"]["container"], "a1", "{from_world:#}");
    assert_eq!(explained[0]["delivered"]["container"], "a2");

    // The same rows as real packets.
    let ep = |c: &netd_tests::Ctr, net: &str| bed.ep(c, net);
    let (a1e, a2e, b1e) = (ep(&a1, "ea"), ep(&a2, "ea"), ep(&b1, "eb"));
    let (c2e, i2e) = (ep(&c2, "closed"), ep(&i2, "inner"));
    let world_ep = Ep::new("world", &world, w);
    let real = |r: anyhow::Result<std::net::IpAddr>| r.map(|_| ()).map_err(|e| format!("{e:#}"));
    let checks: Vec<(usize, Result<(), String>)> = vec![
        (0, real(tcp(&a1.ns, &a2e))),
        (1, no_tcp(&a1.ns, &b1e).map_err(|e| format!("{e:#}"))),
        (2, no_icmp(&b1.ns, a1e.ip).map_err(|e| format!("{e:#}"))),
        (3, no_tcp(&c1.ns, &c2e).map_err(|e| format!("{e:#}"))),
        (
            4,
            icmp(&c1.ns, bed.gateway("closed")).map_err(|e| format!("{e:#}")),
        ),
        (5, real(tcp(&i1.ns, &i2e))),
        (6, no_tcp(&i1.ns, &world_ep).map_err(|e| format!("{e:#}"))),
        (7, real(tcp(&a1.ns, &world_ep))),
    ];
    let mut errs = Vec::new();
    for (i, r) in checks {
        if let Err(e) = r {
            errs.push(format!(
                "row {i} {:?}: real traffic disagrees with explain: {e}",
                rows[i]
            ));
        }
    }
    // Published port: from b1 via its gateway, and from the world.
    let srv = PortServer::start(&a1.ns, &[80], &[]);
    match ask_from(&b1.ns, P::Tcp, sa(gw_b, 8080)) {
        Ok(a) if IpAddr::from(*a.seen.ip()) == b1e.ip => {}
        other => errs.push(format!("row 8: b1 -> {gw_b}:8080: {other:?}")),
    }
    match ask_from(&world, P::Tcp, sa(uplink, 8080)) {
        Ok(a) if *a.seen.ip() == w => {}
        other => errs.push(format!("row 10: world -> {uplink}:8080: {other:?}")),
    }
    drop(srv);
    // W routes the subnet to the host, as SPEC's row assumes.
    netd_tests::cmd::ip_ns(
        &world,
        &["route", "add", "10.96.1.0/24", "via", "203.0.113.2"],
    )
    .unwrap();
    let nar = bed.drop_count("not-a-reply");
    if let Err(e) = no_tcp(&world, &a1e) {
        errs.push(format!("row 9: world -> a1 directly: {e:#}"));
    }
    if bed.drop_count("not-a-reply") <= nar {
        errs.push("row 9: not-a-reply did not count the real drop".into());
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn explain_refuses_bad_input_clearly() {
    let bed = Bed::new();
    bed.network("x", &["--subnet", "10.97.1.0/24"]);
    bed.container("x1", &["--network", "x"]);
    for (src, dst, words) in [
        ("nobody", "x1", &["nobody"][..]),
        ("x1", "x1:80/gre", &["protocol"][..]),
        ("x1", "host/tcp", &["port"][..]),
        ("x1", "host:53/icmp", &["ICMP"][..]),
        ("x1", "10.97.1.200", &[][..]),
        ("world", "x1", &["uplink"][..]),
        ("x1", "x1:http", &["port"][..]),
    ] {
        if words.is_empty() {
            // An unused address of a netd subnet is explained, not refused.
            let v = explain(&bed, src, dst);
            assert_eq!(v["delivered"]["kind"], "nowhere", "{v:#}");
            continue;
        }
        let line = bed.fail(&["explain", src, dst]);
        for w in words {
            assert!(line.contains(w), "explain {src} {dst}: {line}");
        }
    }
}

/// `ping -c COUNT` from `ns` (0.2 s apart); true if every reply came.
fn ping_n(ns: &str, to: Ipv4Addr, count: u32) -> bool {
    let net = format!("--net=/run/netns/{ns}");
    let (count, to) = (count.to_string(), to.to_string());
    netd_tests::cmd::run_timeout(
        "nsenter",
        &[
            &net, "ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", &to,
        ],
        Duration::from_secs(15),
    )
    .success()
}

/// No IPv6 (router solicitations, DAD) in `ns`: counters then move only
/// by what the test sends.
fn quiet(ns: &str) {
    let net = format!("--net=/run/netns/{ns}");
    for key in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        netd_tests::cmd::run_ok("nsenter", &[&net, "sysctl", "-qw", key]).unwrap();
    }
}

fn counters(bed: &Bed, c: &str, net: &str) -> Json {
    bed.ctr_info(c)["Networks"][net]["Counters"].clone()
}

fn delta(after: &Json, before: &Json, key: &str) -> u64 {
    after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0)
}

#[test]
fn endpoint_and_network_counters_move_by_what_was_sent() {
    let bed = Bed::new();
    bed.network("k1", &["--subnet", "10.98.1.0/24"]);
    bed.network("k2", &["--subnet", "10.98.2.0/24"]);
    let a = bed.container("a", &["--network", "k1"]);
    let a2 = bed.container("a2", &["--network", "k1"]);
    let b = bed.container("b", &["--network", "k2"]);
    // The host's bridges send IPv6 (MLD, router advertisements) too.
    quiet(bed.host_ns());
    for c in [&a, &a2, &b] {
        quiet(&c.ns);
    }
    let (a2_ip, b_ip) = (bed.ip(&a2, "k1"), bed.ip(&b, "k2"));
    // Neighbours resolved first: the measured pings are all there is.
    assert!(ping_n(&a.ns, a2_ip, 1), "a -> a2");
    assert!(ping_n(&a.ns, bed.gateway("k1"), 1), "a -> its gateway");
    // Fresh interfaces announce themselves for a moment (IGMP reports):
    // wait until the counters stand still for a second (bounded).
    for _ in 0..10 {
        let now = (counters(&bed, "a", "k1"), counters(&bed, "a2", "k1"));
        std::thread::sleep(Duration::from_secs(1));
        if now == (counters(&bed, "a", "k1"), counters(&bed, "a2", "k1")) {
            break;
        }
    }
    let (ca, ca2, cn) = (
        counters(&bed, "a", "k1"),
        counters(&bed, "a2", "k1"),
        bed.net_info("k1")["Counters"].clone(),
    );
    assert!(ping_n(&a.ns, a2_ip, 5), "a -> a2");
    let (ca_1, ca2_1, cn_1) = (
        counters(&bed, "a", "k1"),
        counters(&bed, "a2", "k1"),
        bed.net_info("k1")["Counters"].clone(),
    );
    // 98-byte echo frames: 14 Ethernet + 20 IP + 8 ICMP + 56 data.
    for (who, after, before) in [("a", &ca_1, &ca), ("a2", &ca2_1, &ca2)] {
        for key in ["PacketsOut", "PacketsIn"] {
            assert_eq!(
                delta(after, before, key),
                5,
                "{who} {key}: {before} -> {after}"
            );
        }
        for key in ["BytesOut", "BytesIn"] {
            assert_eq!(
                delta(after, before, key),
                5 * 98,
                "{who} {key}: {before} -> {after}"
            );
        }
    }
    for key in ["PacketsOut", "PacketsIn"] {
        assert_eq!(
            delta(&cn_1, &cn, key),
            10,
            "network k1 {key}: {cn} -> {cn_1}"
        );
    }
    // Dropped echo requests count as the sender's drops, by reason.
    assert!(!ping_n(&a.ns, b_ip, 3), "a -> b must be dropped");
    let ca_2 = counters(&bed, "a", "k1");
    let dropped = ca_2["Drops"]["network-isolation"].as_u64().unwrap_or(0)
        - ca_1["Drops"]["network-isolation"].as_u64().unwrap_or(0);
    assert_eq!(dropped, 3, "{ca_1} -> {ca_2}");
    assert_eq!(
        delta(&ca_2, &ca_1, "PacketsOut"),
        0,
        "drops are not sent packets"
    );
    let status = bed.json(&["status", "--format", "json"]);
    assert_eq!(
        status["network_counters"]["k1"],
        bed.net_info("k1")["Counters"],
        "status and network inspect agree"
    );
    // The counters are pinned maps: an agent restart keeps them.
    bed.stop_agent();
    bed.start_agent();
    // (Kept, not reset: they may only have grown by stray ARP meanwhile.)
    let after = counters(&bed, "a", "k1");
    for key in ["PacketsIn", "PacketsOut", "BytesIn", "BytesOut"] {
        assert!(
            after[key].as_u64() >= ca_2[key].as_u64() && ca_2[key].as_u64() > Some(0),
            "a's {key} across a restart: {ca_2} -> {after}"
        );
    }
    assert_eq!(
        after["Drops"]["network-isolation"], ca_2["Drops"]["network-isolation"],
        "a's drops across a restart"
    );
}

/// A running `netd monitor`, its stdout read line by line.
struct Monitor {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Monitor {
    fn start(bed: &Bed, args: &[&str]) -> Monitor {
        let sock = bed.socket();
        let mut child = std::process::Command::new(netd_tests::bed::netd_bin())
            .arg("-H")
            .arg(&sock)
            .arg("monitor")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start netd monitor");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Monitor { child, lines }
    }

    /// The first line (within `secs`) that `want` accepts.
    fn find(&self, secs: u64, want: impl Fn(&Json) -> bool) -> Option<Json> {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                return None;
            };
            let v: Json = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("monitor printed a line that is not JSON ({e}): {line}")
            });
            if want(&v) {
                return Some(v);
            }
        }
        None
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `status`'s view of the event switch: (monitors, types).
fn events(bed: &Bed) -> (u64, Json) {
    let s = bed.json(&["status", "--format", "json"]);
    (
        s["events"]["monitors"].as_u64().unwrap(),
        s["events"]["types"].clone(),
    )
}

fn wait_events(bed: &Bed, want: (u64, Json)) {
    let what = format!("events to be {want:?}");
    wait_for(&what, Duration::from_secs(5), || {
        let now = events(bed);
        (now == want).then_some(()).ok_or(format!("{now:?}"))
    });
}

#[test]
fn monitor_shows_a_real_drop_with_names_and_costs_nothing_once_gone() {
    let bed = Bed::new();
    bed.network("v1", &["--subnet", "10.99.1.0/24"]);
    bed.network("v2", &["--subnet", "10.99.2.0/24"]);
    let a = bed.container("a", &["--network", "v1"]);
    let b = bed.container("b", &["--network", "v2"]);
    let (a_ip, b_ip) = (bed.ip(&a, "v1"), bed.ip(&b, "v2"));
    wait_events(&bed, (0, serde_json::json!([])));
    let m = Monitor::start(
        &bed,
        &["--type", "drop", "--format", "json", "--container", "a"],
    );
    wait_events(&bed, (1, serde_json::json!(["drop"])));
    assert!(!ping_n(&a.ns, b_ip, 2), "a -> b must be dropped");
    let ev = m
        .find(10, |v| v["type"] == "drop" && v["proto"] == "icmp")
        .expect("the dropped ping appears in netd monitor");
    assert_eq!(ev["reason"], "network-isolation", "{ev}");
    assert_eq!(ev["hook"], "from_container", "{ev}");
    assert_eq!(ev["container"], "a", "{ev}");
    assert_eq!(ev["network"], "v1", "{ev}");
    assert_eq!(ev["src"]["address"], a_ip.to_string(), "{ev}");
    assert_eq!(ev["dst"]["address"], b_ip.to_string(), "{ev}");
    assert_eq!(ev["dst"]["container"], "b", "{ev}");
    assert_eq!(ev["dst"]["network"], "v2", "{ev}");
    // A second monitor at once, of another type: the switch is the union.
    let m2 = Monitor::start(&bed, &["--type", "nat", "--format", "json"]);
    wait_events(&bed, (2, serde_json::json!(["drop", "nat"])));
    drop(m2);
    wait_events(&bed, (1, serde_json::json!(["drop"])));
    // Gone: the datapath builds no events any more.
    drop(m);
    wait_events(&bed, (0, serde_json::json!([])));
    // An unknown name is refused, not streamed.
    let line = bed.fail(&["monitor", "--container", "nobody"]);
    assert!(line.contains("nobody"), "{line}");
}

#[test]
fn monitor_shows_masquerade_and_published_port_translations() {
    let (bed, world) = Bed::with_world(&[]);
    bed.network("t1", &["--subnet", "10.99.5.0/24"]);
    bed.network("t2", &["--subnet", "10.99.6.0/24"]);
    let a = bed.container("a", &["--network", "t1", "-p", "8080:80"]);
    let b = bed.container("b", &["--network", "t2"]);
    let (a_ip, b_ip, gw_b) = (bed.ip(&a, "t1"), bed.ip(&b, "t2"), bed.gateway("t2"));
    let m = Monitor::start(&bed, &["--type", "nat", "--format", "json"]);
    wait_events(&bed, (1, serde_json::json!(["nat"])));
    let w = Ep::new("world", &world, Ipv4Addr::new(203, 0, 113, 1));
    tcp(&a.ns, &w).expect("a -> world, masqueraded");
    let snat = m
        .find(10, |v| v["nat"] == "snat" && v["proto"] == "tcp")
        .expect("the masqueraded flow appears in netd monitor");
    assert_eq!(snat["type"], "nat", "{snat}");
    assert_eq!(snat["hook"], "uplink_out", "{snat}");
    assert_eq!(snat["src"]["address"], a_ip.to_string(), "{snat}");
    assert_eq!(snat["src"]["container"], "a", "{snat}");
    assert_eq!(snat["dst"]["address"], "203.0.113.1", "{snat}");
    assert_eq!(snat["translated"]["address"], "203.0.113.2", "{snat}");
    let srv = PortServer::start(&a.ns, &[80], &[]);
    let seen = ask_from(&b.ns, P::Tcp, sa(gw_b, 8080)).expect("b -> published port");
    assert_eq!(*seen.seen.ip(), b_ip);
    drop(srv);
    let dnat = m
        .find(10, |v| v["nat"] == "dnat")
        .expect("the published flow appears in netd monitor");
    assert_eq!(dnat["hook"], "from_container", "{dnat}");
    assert_eq!(dnat["src"]["container"], "b", "{dnat}");
    assert_eq!(dnat["dst"]["address"], gw_b.to_string(), "{dnat}");
    assert_eq!(dnat["dst"]["port"], 8080, "{dnat}");
    assert_eq!(dnat["translated"]["address"], a_ip.to_string(), "{dnat}");
    assert_eq!(dnat["translated"]["port"], 80, "{dnat}");
    assert_eq!(dnat["translated"]["container"], "a", "{dnat}");
}

/// `ping -6` from `ns` to `to`, `count` echoes.
fn ping6_n(ns: &str, to: std::net::Ipv6Addr, count: u32) -> bool {
    let net = format!("--net=/run/netns/{ns}");
    let (count, to) = (count.to_string(), to.to_string());
    netd_tests::cmd::run_timeout(
        "nsenter",
        &[
            &net, "ping", "-6", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", &to,
        ],
        Duration::from_secs(15),
    )
    .success()
}

/// Endpoints of an IPv6-only network have counters of their own (they
/// have no IPv4 address to key them by): an idle third container's stay
/// where they were while two others ping each other.
#[test]
fn ipv6_only_endpoints_count_their_own_packets() {
    const ECHOES: u32 = 20;
    let bed = Bed::new();
    bed.network(
        "six",
        &["--ipv6", "--ipv4=false", "--subnet", "fd00:98:6::/64"],
    );
    let s1 = bed.container("s1", &["--network", "six"]);
    let s2 = bed.container("s2", &["--network", "six"]);
    bed.container("s3", &["--network", "six"]);
    let s2_ip = bed.ip6(&s2, "six");
    assert!(ping6_n(&s1.ns, s2_ip, 1), "s1 -> s2 (neighbours resolved)");
    let before: Vec<Json> = ["s1", "s2", "s3"]
        .iter()
        .map(|c| counters(&bed, c, "six"))
        .collect();
    for (c, v) in ["s1", "s2", "s3"].iter().zip(&before) {
        assert!(
            v.is_object(),
            "{c} shows counters on an IPv6-only network: {v}"
        );
    }
    // 20 echoes: far more than the multicast any one port gets meanwhile
    // (fresh interfaces' DAD, router solicitations and MLD reports reach
    // every port, a few more or less each under load).
    assert!(ping6_n(&s1.ns, s2_ip, ECHOES), "s1 -> s2");
    let after: Vec<Json> = ["s1", "s2", "s3"]
        .iter()
        .map(|c| counters(&bed, c, "six"))
        .collect();
    let out1 = delta(&after[0], &before[0], "PacketsOut");
    let in2 = delta(&after[1], &before[1], "PacketsIn");
    assert!(
        out1 >= ECHOES as u64,
        "s1 PacketsOut grew by {out1}: {:?}",
        (&before[0], &after[0])
    );
    assert!(
        in2 >= ECHOES as u64,
        "s2 PacketsIn grew by {in2}: {:?}",
        (&before[1], &after[1])
    );
    // s3 saw none of it: it gets the multicast the others get, not the
    // echoes. Before, every IPv6-only endpoint shared one entry and all
    // three moved alike (s3 by at least 2 x ECHOES).
    let out3 = delta(&after[2], &before[2], "PacketsOut");
    let in3 = delta(&after[2], &before[2], "PacketsIn");
    assert!(
        out1 >= out3 + 15 && in2 >= in3 + 15,
        "s3 moved like the pinging pair (s1 out {out1}, s2 in {in2}, s3 out {out3} in {in3}): \
         its counters are not its own"
    );
}
