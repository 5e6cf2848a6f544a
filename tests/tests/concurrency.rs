//! Concurrent API calls: many clients at once get consistent answers.
use std::collections::HashSet;

use netd_tests::bed::Bed;

#[test]
fn concurrent_adds_and_publishes_stay_consistent() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.94.1.0/24"]);
    let namespaces: Vec<String> = (0..16).map(|i| bed.new_netns(&format!("c{i}"))).collect();
    // 16 clients at once; every second one asks for the same host port.
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let bed = &bed;
                s.spawn(move || {
                    let path = format!("/run/netns/{ns}");
                    let name = format!("c{i}");
                    let publish = if i % 2 == 0 {
                        "18080:80".to_string()
                    } else {
                        format!("{}:80", 19000 + i)
                    };
                    bed.netd(&[
                        "container",
                        "add",
                        &name,
                        "--netns",
                        &path,
                        "--network",
                        "net1",
                        "-p",
                        &publish,
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = outs.iter().filter(|o| o.success()).count();
    // All odd ones succeed; exactly one of the even ones gets port 18080.
    assert_eq!(ok, 8 + 1, "{outs:#?}");
    for o in outs.iter().filter(|o| !o.success()) {
        assert!(o.stderr.contains("already published"), "{o}");
    }
    let list = bed.json(&["container", "ls", "--format", "json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 9);
    let addrs: HashSet<String> = list
        .iter()
        .map(|c| {
            c["Networks"]["net1"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(addrs.len(), 9, "addresses must be distinct: {addrs:?}");
    // The refused ones left nothing behind: one veth per container.
    let veths = bed
        .host_links()
        .iter()
        .filter(|l| l.starts_with("nd"))
        .count();
    assert_eq!(veths, 9, "{:?}", bed.host_links());
}
