//! One query in, one decision out: answer from the name table, forward, or
//! drop. Pure (no I/O), so every malformed input can be unit-tested.
use std::net::IpAddr;

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        rdata::{A, AAAA, PTR},
        DNSClass, Name, RData, Record, RecordType,
    },
};
use ipnet::IpNet;

use super::records::{Lookup, Table};

/// TTL of the answers for container names (as Docker).
pub const TTL: u32 = 600;
/// Largest query accepted; anything longer is answered FORMERR.
pub const MAX_QUERY: usize = 4096;
/// UDP payload size we advertise and the most we send over UDP.
const MAX_UDP: u16 = 1232;

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a name netd knows: ask the upstreams.
    Forward(Request),
    /// Say nothing (too short to answer, or not a query at all).
    Drop,
}

/// A parsed query that is to be forwarded.
#[derive(Debug)]
pub struct Request {
    pub message: Message,
    /// The largest reply the client accepts.
    pub limit: usize,
}

impl Request {
    /// SERVFAIL for this query (upstreams failed or busy).
    pub fn servfail(&self) -> Vec<u8> {
        encode(
            &error(&self.message, ResponseCode::ServFail, true),
            self.limit,
        )
    }
}

/// Decides what to do with `bytes`, received from `src` on the listener of
/// network `via`, over TCP when `tcp`.
pub fn handle(
    table: &Table,
    via: &str,
    src: impl Into<IpAddr>,
    bytes: &[u8],
    tcp: bool,
) -> Outcome {
    let src: IpAddr = src.into();
    // Shorter than a header: nothing to answer to. A response: never answer
    // (that is how reflection loops start).
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let op_code = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
    if bytes.len() > MAX_QUERY {
        return Outcome::Reply(header_only(id, op_code, ResponseCode::FormErr));
    }
    let Ok(req) = Message::from_vec(bytes) else {
        return Outcome::Reply(header_only(id, op_code, ResponseCode::FormErr));
    };
    let limit = if tcp {
        u16::MAX as usize
    } else {
        req.edns
            .as_ref()
            .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP)) as usize
    };
    let Some(net) = table.network(via) else {
        return reply(error(&req, ResponseCode::Refused, false), limit);
    };
    let forwards = !net.internal;
    if req.metadata.op_code != OpCode::Query {
        return reply(error(&req, ResponseCode::NotImp, forwards), limit);
    }
    if req.queries.len() != 1 {
        return reply(error(&req, ResponseCode::FormErr, forwards), limit);
    }
    if table.asker_networks(src).is_none() {
        // Not a container netd knows: this is no open resolver.
        return reply(error(&req, ResponseCode::Refused, false), limit);
    }
    let q = &req.queries[0];
    let local = matches!(q.query_class(), DNSClass::IN | DNSClass::ANY);
    let answer = if !local {
        None
    } else if q.query_type() == RecordType::PTR {
        reverse(table, src, q).map(|name| match name {
            Some(name) => {
                let ptr = Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(name)));
                (ResponseCode::NoError, vec![ptr])
            }
            None => (ResponseCode::NXDomain, vec![]),
        })
    } else {
        let name = q.name().to_ascii();
        match table.lookup(src, via, &name) {
            Lookup::Found(ips) => {
                let record = |data| Record::from_rdata(q.name().clone(), TTL, data);
                let (a, aaaa) = match q.query_type() {
                    RecordType::A => (true, false),
                    RecordType::AAAA => (false, true),
                    RecordType::ANY => (true, true),
                    // The name exists, with no data of that type.
                    _ => (false, false),
                };
                let mut records: Vec<Record> = Vec::new();
                if a {
                    records.extend(ips.into_iter().map(|ip| record(RData::A(A(ip)))));
                }
                if let (true, Lookup::Found(ips6)) = (aaaa, table.lookup6(src, via, &name)) {
                    records.extend(ips6.into_iter().map(|ip| record(RData::AAAA(AAAA(ip)))));
                }
                Some((ResponseCode::NoError, records))
            }
            Lookup::Hidden => Some((ResponseCode::NXDomain, vec![])),
            Lookup::Unknown => None,
        }
    };
    match answer {
        Some((rcode, answers)) => {
            let mut msg = error(&req, rcode, forwards);
            msg.metadata.authoritative = true;
            msg.answers = answers;
            reply(msg, limit)
        }
        // Internal networks resolve their own names and forward nothing.
        None if !forwards => reply(error(&req, ResponseCode::Refused, false), limit),
        None => Outcome::Forward(Request {
            message: req,
            limit,
        }),
    }
}

/// `Some(name)` for a PTR query about a netd address (`None` inside: not
/// visible, NXDOMAIN); `None` when netd knows nothing about it.
fn reverse(table: &Table, src: IpAddr, q: &Query) -> Option<Option<Name>> {
    let addr = match q.name().parse_arpa_name() {
        Ok(IpNet::V4(net)) if net.prefix_len() == 32 => IpAddr::V4(net.addr()),
        Ok(IpNet::V6(net)) if net.prefix_len() == 128 => IpAddr::V6(net.addr()),
        _ => return None,
    };
    let found = table.reverse(src, addr)?;
    Some(found.and_then(|c| Name::from_ascii(format!("{c}.")).ok()))
}

/// A response to `req` with `rcode`, echoing its question, and no records.
fn error(req: &Message, rcode: ResponseCode, recursion_available: bool) -> Message {
    let mut msg = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    msg.metadata.recursion_desired = req.metadata.recursion_desired;
    msg.metadata.checking_disabled = req.metadata.checking_disabled;
    msg.metadata.recursion_available = recursion_available;
    msg.metadata.response_code = rcode;
    msg.queries = req.queries.clone();
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP);
        msg.set_edns(edns);
    }
    msg
}

fn reply(msg: Message, limit: usize) -> Outcome {
    Outcome::Reply(encode(&msg, limit))
}

/// Encodes `msg`; if it does not fit in `limit`, the truncated form (TC set,
/// no records) so that the client retries over TCP.
pub fn encode(msg: &Message, limit: usize) -> Vec<u8> {
    match msg.to_vec() {
        Ok(v) if v.len() <= limit => v,
        Ok(_) => msg.truncate().to_vec().unwrap_or_else(|_| {
            header_only(
                msg.metadata.id,
                msg.metadata.op_code,
                ResponseCode::ServFail,
            )
        }),
        Err(_) => header_only(
            msg.metadata.id,
            msg.metadata.op_code,
            ResponseCode::ServFail,
        ),
    }
}

/// A response with only a header: for queries too broken to echo.
fn header_only(id: u16, op_code: OpCode, rcode: ResponseCode) -> Vec<u8> {
    let msg = Message::error_msg(id, op_code, rcode);
    msg.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsName, DnsNetwork, DnsView};
    use std::net::Ipv4Addr;

    fn table(internal: bool) -> Table {
        Table::new(&DnsView {
            networks: vec![DnsNetwork {
                id: "n".into(),
                subnet: "172.18.0.0/16".parse().unwrap(),
                gateway: "172.18.0.1".parse().unwrap(),
                subnet6: Some("fd00:18::/64".parse().unwrap()),
                internal,
                serve: true,
            }],
            // c2..c99; the even ones have IPv6 too (fd00:18::N).
            names: (2..100)
                .map(|i| DnsName {
                    network_id: "n".into(),
                    container: format!("c{i}"),
                    aliases: vec!["many".into()],
                    ip: Ipv4Addr::new(172, 18, 0, i),
                    ip6: (i % 2 == 0)
                        .then(|| std::net::Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, i.into())),
                    remote: false,
                })
                .collect(),
            resolvers: vec![],
            upstreams: vec![],
        })
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn answer(out: Outcome) -> Message {
        match out {
            Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn addrs(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_a_for_a_container() {
        let t = table(false);
        let m = answer(handle(&t, "n", SRC, &query("C3.", RecordType::A), false));
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(addrs(&m), vec![Ipv4Addr::new(172, 18, 0, 3)]);
        assert_eq!(
            m.answers[0].name.to_ascii(),
            "C3.",
            "the question's case is kept"
        );
    }

    #[test]
    fn aaaa_for_a_container_without_ipv6_is_nodata() {
        let t = table(false);
        let m = answer(handle(&t, "n", SRC, &query("c3.", RecordType::AAAA), false));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(m.metadata.authoritative);
    }

    fn addrs6(m: &Message) -> Vec<std::net::Ipv6Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(AAAA(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn aaaa_and_any_for_a_dual_stack_container() {
        let t = table(false);
        let c4: std::net::Ipv6Addr = "fd00:18::4".parse().unwrap();
        let m = answer(handle(&t, "n", SRC, &query("c4.", RecordType::AAAA), false));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs6(&m), vec![c4]);
        assert!(addrs(&m).is_empty());
        let m = answer(handle(&t, "n", SRC, &query("c4.", RecordType::ANY), false));
        assert_eq!(addrs(&m), vec![Ipv4Addr::new(172, 18, 0, 4)]);
        assert_eq!(addrs6(&m), vec![c4]);
        // A AAAA question for a name netd does not know is forwarded.
        assert!(matches!(
            handle(
                &t,
                "n",
                SRC,
                &query("example.com.", RecordType::AAAA),
                false
            ),
            Outcome::Forward(_)
        ));
    }

    #[test]
    fn unknown_names_are_forwarded_or_refused_when_internal() {
        let q = query("example.com.", RecordType::A);
        assert!(matches!(
            handle(&table(false), "n", SRC, &q, false),
            Outcome::Forward(_)
        ));
        let m = answer(handle(&table(true), "n", SRC, &q, false));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // Internal networks still resolve their own names.
        let m = answer(handle(
            &table(true),
            "n",
            SRC,
            &query("c3.", RecordType::A),
            false,
        ));
        assert_eq!(addrs(&m), vec![Ipv4Addr::new(172, 18, 0, 3)]);
    }

    #[test]
    fn strangers_are_refused() {
        let t = table(false);
        let m = answer(handle(
            &t,
            "n",
            Ipv4Addr::new(10, 1, 1, 1),
            &query("c3.", RecordType::A),
            false,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let m = answer(handle(&t, "gone", SRC, &query("c3.", RecordType::A), false));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    /// PTR in both families: a container's address gives its name, an
    /// address of the subnet without a container NXDOMAIN, an address
    /// outside every subnet is forwarded.
    #[test]
    fn ptr_for_containers() {
        let t = table(false);
        let arpa6 = |a: &str| {
            let ip: std::net::Ipv6Addr = a.parse().unwrap();
            let nibbles: Vec<String> = ip
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
                .collect();
            format!("{}.ip6.arpa.", nibbles.join("."))
        };
        let cases = [
            (
                "5.0.18.172.in-addr.arpa.".to_string(),
                "c5.",
                "200.0.18.172.in-addr.arpa.".to_string(),
                "8.8.8.8.in-addr.arpa.".to_string(),
            ),
            (
                arpa6("fd00:18::6"),
                "c6.",
                arpa6("fd00:18::7"),
                arpa6("2001:db8::1"),
            ),
        ];
        for (hit, name, empty, outside) in cases {
            let m = answer(handle(&t, "n", SRC, &query(&hit, RecordType::PTR), false));
            match &m.answers[0].data {
                RData::PTR(PTR(n)) => assert_eq!(n.to_ascii(), name, "{hit}"),
                other => panic!("{hit}: {other:?}"),
            }
            let m = answer(handle(&t, "n", SRC, &query(&empty, RecordType::PTR), false));
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{empty}");
            assert!(
                matches!(
                    handle(&t, "n", SRC, &query(&outside, RecordType::PTR), false),
                    Outcome::Forward(_)
                ),
                "{outside}"
            );
        }
    }

    #[test]
    fn big_answers_are_truncated_over_udp_only() {
        let t = table(false);
        let m = answer(handle(&t, "n", SRC, &query("many.", RecordType::A), false));
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let m = answer(handle(&t, "n", SRC, &query("many.", RecordType::A), true));
        assert!(!m.metadata.truncation);
        assert_eq!(addrs(&m).len(), 98);
    }

    #[test]
    fn garbage_never_panics() {
        let t = table(false);
        assert!(matches!(handle(&t, "n", SRC, b"", false), Outcome::Drop));
        assert!(matches!(
            handle(&t, "n", SRC, b"short", false),
            Outcome::Drop
        ));
        // A header that promises a question that is not there.
        let mut bad = query("c3.", RecordType::A);
        bad.truncate(15);
        let m = answer(handle(&t, "n", SRC, &bad, false));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 0x1234);
        // Oversized.
        let mut big = query("c3.", RecordType::A);
        big.resize(MAX_QUERY + 1, 0);
        let m = answer(handle(&t, "n", SRC, &big, false));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // A response is never answered.
        let mut resp = query("c3.", RecordType::A);
        resp[2] |= 0x80;
        assert!(matches!(handle(&t, "n", SRC, &resp, false), Outcome::Drop));
        // Random bytes: any outcome, but no panic.
        let mut seed = 0x9e3779b97f4a7c15u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = handle(&t, "n", SRC, &bytes, len % 2 == 0);
        }
    }

    #[test]
    fn two_questions_is_formerr_and_notify_is_notimp() {
        let t = table(false);
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        m.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
        let r = answer(handle(&t, "n", SRC, &m.to_vec().unwrap(), false));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        let mut m = Message::new(8, MessageType::Query, OpCode::Notify);
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        let r = answer(handle(&t, "n", SRC, &m.to_vec().unwrap(), false));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    }
}
