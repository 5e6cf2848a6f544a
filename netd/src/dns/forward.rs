//! Forwarding to the host's upstream resolvers: a fresh socket and a fresh
//! random id per query, a time limit for the whole exchange, and SERVFAIL
//! (decided by the caller) when no upstream answers.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::{timeout, Instant},
};

use super::answer::{encode, Request};

/// How long a client waits for the upstreams, all tries together.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Nameservers of a resolv.conf, port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A link-local IPv6 server may carry a zone (`fe80::1%eth0`): skip it.
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The host's upstreams, from /etc/resolv.conf (empty if unreadable).
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|s| parse_resolv_conf(&s))
        .unwrap_or_default()
}

/// `IP` or `IP:PORT` (`[V6]:PORT`); port 53 when none is given.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("expected IP or IP:PORT, got {s:?}"))
}

/// Asks the upstreams in turn, sharing `TIMEOUT` between them; the reply
/// bytes for the client (its id restored), or `None` when none answered.
pub async fn forward(upstreams: &[SocketAddr], req: &Request, tcp: bool) -> Option<Vec<u8>> {
    let client_id = req.message.metadata.id;
    let mut msg = req.message.clone();
    msg.metadata.id = rand::random();
    let bytes = msg.to_vec().ok()?;
    let question = req.message.queries.first()?;
    let deadline = Instant::now() + TIMEOUT;
    let mut fallback = None;
    for (i, up) in upstreams.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = left / (upstreams.len() - i) as u32;
        let got = timeout(share, ask(*up, &bytes, msg.metadata.id, question, tcp)).await;
        let Ok(Some(reply)) = got else { continue };
        let rcode = reply.metadata.response_code;
        let mut out = reply;
        out.metadata.id = client_id;
        // SERVFAIL/REFUSED from one upstream: another may do better.
        if matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused) {
            fallback = Some(out);
            continue;
        }
        return Some(encode(&out, req.limit));
    }
    fallback.map(|m| encode(&m, req.limit))
}

/// One exchange with one upstream: UDP, then TCP if the client used TCP
/// and the UDP answer was truncated.
async fn ask(up: SocketAddr, bytes: &[u8], id: u16, q: &Query, tcp: bool) -> Option<Message> {
    let reply = ask_udp(up, bytes, id, q).await?;
    if tcp && reply.metadata.truncation {
        return ask_tcp(up, bytes, id, q).await;
    }
    Some(reply)
}

async fn ask_udp(up: SocketAddr, bytes: &[u8], id: u16, q: &Query) -> Option<Message> {
    let any: IpAddr = match up {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((any, 0)).await.ok()?;
    sock.connect(up).await.ok()?;
    sock.send(bytes).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        // A connected socket only hears from `up`; anything that is not the
        // answer to this question is ignored (the time limit still holds).
        let n = sock.recv(&mut buf).await.ok()?;
        if let Some(m) = matching(&buf[..n], id, q) {
            return Some(m);
        }
    }
}

async fn ask_tcp(up: SocketAddr, bytes: &[u8], id: u16, q: &Query) -> Option<Message> {
    let mut s = TcpStream::connect(up).await.ok()?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
    s.write_all(&out).await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    matching(&buf, id, q)
}

/// The reply if it answers query `id` for question `q`.
fn matching(bytes: &[u8], id: u16, q: &Query) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    let same_question = m.queries.len() == 1
        && m.queries[0].query_type() == q.query_type()
        && m.queries[0].query_class() == q.query_class()
        // Name equality in hickory ignores case.
        && m.queries[0].name() == q.name();
    (m.metadata.id == id && m.metadata.message_type == MessageType::Response && same_question)
        .then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver  2001:db8::1\n\
                    nameserver fe80::1%eth0\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn upstream_flag() {
        assert_eq!(
            parse_upstream("10.0.0.2"),
            Ok("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("10.0.0.2:5353"),
            Ok("10.0.0.2:5353".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("[2001:db8::1]:54"),
            Ok("[2001:db8::1]:54".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("2001:db8::1"),
            Ok("[2001:db8::1]:53".parse().unwrap())
        );
        assert!(parse_upstream("nope").is_err());
    }
}
