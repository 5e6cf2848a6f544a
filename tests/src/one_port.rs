//! Two containers, `a` and `b`, from one source port to one server port at
//! once (the masquerade tests of either family): each opens its socket on
//! a thread in its netns, a barrier waits until both have, then both talk.
//! Generic over the address type (`SocketAddrV4`, `SocketAddr`).

use std::fmt::{Debug, Display};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Arc, Barrier};

use anyhow::bail;

use crate::netns::{join, spawn_in};
use crate::ports::any_of;

/// Runs `open` in netns `a` and in netns `b` at once, waits until both
/// returned (barrier), then `talk` with what each opened. Returns both
/// results; panics with `what` and both outcomes unless both succeeded.
pub fn at_once<S, T, O, F>(a: &str, b: &str, what: &str, open: O, talk: F) -> (T, T)
where
    S: 'static,
    T: Debug + Send + 'static,
    O: Fn() -> anyhow::Result<S> + Copy + Send + 'static,
    F: Fn(S) -> anyhow::Result<T> + Copy + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let run = |ns: &str| {
        let barrier = barrier.clone();
        spawn_in(ns, move || {
            let s = open();
            barrier.wait();
            talk(s?)
        })
    };
    let (ha, hb) = (run(a), run(b));
    match (join(ha), join(hb)) {
        (Ok(x), Ok(y)) => (x, y),
        (x, y) => panic!("{what}: a: {x:?}; b: {y:?}"),
    }
}

/// TCP from `a` and `b`, both from local port `sport`, to `dst`:
/// `connect(sport, dst)` in each, then (both connected) `seen` gives the
/// address the server saw.
pub fn tcp<A, C>(
    a: &str,
    b: &str,
    sport: u16,
    dst: A,
    connect: fn(u16, A) -> anyhow::Result<C>,
    seen: fn(C) -> anyhow::Result<A>,
) -> (A, A)
where
    A: Copy + Debug + Display + Send + 'static,
    C: 'static,
{
    let what = format!("TCP from a and b (both from port {sport}) to {dst}");
    at_once(a, b, &what, move || connect(sport, dst), seen)
}

/// UDP from `a` and `b`, both bound to local port `sport` (the unspecified
/// address of `dst`'s family) before either sends, to `dst`: two
/// datagrams a flow through `ask` (which returns the address the server
/// saw), both of a flow seen alike.
pub fn udp<A>(
    a: &str,
    b: &str,
    sport: u16,
    dst: A,
    ask: fn(&UdpSocket, A, &[u8]) -> anyhow::Result<A>,
) -> (A, A)
where
    A: Copy + Debug + Display + PartialEq + Into<SocketAddr> + Send + 'static,
{
    let any = any_of(dst.into());
    let what = format!("UDP from a and b (both from port {sport}) to {dst}");
    let open = move || Ok(UdpSocket::bind((any, sport))?);
    let talk = move |s: UdpSocket| {
        let first = ask(&s, dst, b"first")?;
        let second = ask(&s, dst, b"second")?;
        if first != second {
            bail!("one flow seen as {first}, then {second}");
        }
        Ok(first)
    };
    at_once(a, b, &what, open, talk)
}

/// Asserts that the world saw `a`'s and `b`'s `proto` flows from
/// `uplink`, on two different ports of `snat`.
pub fn assert_two_ports(
    proto: &str,
    (a, b): (SocketAddr, SocketAddr),
    uplink: IpAddr,
    snat: &RangeInclusive<u16>,
) {
    let on = |s: SocketAddr| s.ip() == uplink && snat.contains(&s.port());
    assert!(
        on(a) && on(b) && a.port() != b.port(),
        "{proto}: the world saw a as {a} and b as {b}; expected {uplink} with two different ports in {}-{}",
        snat.start(),
        snat.end()
    );
}
