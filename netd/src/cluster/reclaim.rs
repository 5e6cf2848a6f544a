//! Addresses of hosts gone for good. An address claim outlives its host's
//! lease (so that a host cut off for a while gets its addresses back, and
//! no one else gets them meanwhile); a host that stays away longer than
//! `--cluster-reclaim-after` gives them back: any live host deletes its
//! claims, each in a transaction that holds only while that host is still
//! not registered (`etcd::Etcd::reclaim_address`).
//!
//! How long a host has been away is what this host saw during its current
//! session (etcd keeps no time of a key's deletion): a new session starts
//! counting again, which only delays a reclaim.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::{records::AddressClaim, view::View};

/// Since when each host holding claims has been seen unregistered.
#[derive(Debug, Default)]
pub struct Absences {
    since: BTreeMap<String, Instant>,
}

/// A claim to give back: (network id, address, the claim as it is).
pub type Due = (String, Ipv4Addr, AddressClaim);

impl Absences {
    /// Follows `view` at `now`; returns the claims of hosts other than `me`
    /// away for `after` or longer.
    pub fn due(&mut self, view: &View, me: &str, now: Instant, after: Duration) -> Vec<Due> {
        let away: Vec<&str> = view
            .addresses
            .values()
            .map(|c| c.host.as_str())
            .filter(|h| *h != me && !view.hosts.contains_key(*h))
            .collect();
        self.since.retain(|h, _| away.contains(&h.as_str()));
        for h in &away {
            self.since.entry(h.to_string()).or_insert(now);
        }
        view.addresses
            .iter()
            .filter(|(_, c)| {
                self.since
                    .get(&c.host)
                    .is_some_and(|t| now.duration_since(*t) >= after)
            })
            .map(|((net, ip), c)| (net.clone(), *ip, c.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::HostRecord;

    fn claim(host: &str) -> AddressClaim {
        AddressClaim {
            host: host.into(),
            container_id: "c".into(),
        }
    }

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.into(),
            hostname: id.into(),
            address: Ipv4Addr::new(198, 51, 100, 1),
            since: String::new(),
        }
    }

    #[test]
    fn only_hosts_away_long_enough() {
        let ip = |d| Ipv4Addr::new(10, 0, 0, d);
        let mut v = View::default();
        v.hosts.insert("me".into(), host("me"));
        v.hosts.insert("live".into(), host("live"));
        for (d, h) in [(2, "me"), (3, "live"), (4, "gone"), (5, "gone")] {
            v.addresses.insert(("n".into(), ip(d)), claim(h));
        }
        let mut a = Absences::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(10);
        assert!(a.due(&v, "me", t0, after).is_empty());
        let due = a.due(&v, "me", t0 + after, after);
        assert_eq!(
            due.iter().map(|d| d.1).collect::<Vec<_>>(),
            vec![ip(4), ip(5)]
        );
        // Back before that: counting starts again when it goes again.
        v.hosts.insert("gone".into(), host("gone"));
        assert!(a.due(&v, "me", t0 + after, after).is_empty());
        v.hosts.remove("gone");
        assert!(a.due(&v, "me", t0 + after * 2, after).is_empty());
        assert_eq!(a.due(&v, "me", t0 + after * 3, after).len(), 2);
        // This host's own claims are never reclaimed by it (its session
        // start sorts them out), even while it is missing from the view.
        v.hosts.remove("me");
        assert!(a
            .due(&v, "me", t0 + after * 9, after)
            .iter()
            .all(|d| d.2.host == "gone"));
    }
}
