//! The SNAT port allocator: a free source port (or ICMP echo id) on the
//! uplink's address for a new masqueraded flow, for IPv4 and IPv6 alike
//! (one allocator over [`Family`]). A port is free when no tracked flow
//! uses it toward the same destination and no host socket does either; a
//! closed TCP flow's port may be taken over by a new connection. Both
//! conntrack directions are written when a port is claimed.
use aya_ebpf::{
    bindings::{
        bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2,
    },
    helpers::{bpf_get_prandom_u32, bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    programs::TcContext,
};
use netd_common::{
    tcp_flow_closed, Addr6, CtEntry, CtEntry6, CtKey, CtKey6, DropReason, CT_F_DNAT, CT_F_SNAT,
    TCP_ACK, TCP_RST, TCP_SYN,
};

use crate::{
    conntrack as ct4, conntrack6 as ct6,
    parse::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP},
};

/// Ports tried before a new flow is dropped as "exhausted".
const SNAT_ATTEMPTS: u32 = 32;

/// What the allocator needs of an address family: its conntrack maps and
/// a socket tuple for the host's socket lookup.
pub trait Family {
    type Addr: Copy + PartialEq;
    type Key;
    type Entry: Copy;
    fn key(saddr: Self::Addr, daddr: Self::Addr, sport: u16, dport: u16, proto: u8) -> Self::Key;
    fn entry(addr: Self::Addr, port: u16, flags: u8, tcp_flags: u8) -> Self::Entry;
    /// `reply` as the outbound entry: translated to `addr`/`port`.
    fn outbound(reply: &Self::Entry, addr: Self::Addr, port: u16, tcp_flags: u8) -> Self::Entry;
    /// (TCP flags, address, port, flags) of an entry.
    fn fields(e: *mut Self::Entry) -> (u8, Self::Addr, u16, u8);
    fn lookup_in(k: &Self::Key) -> Option<*mut Self::Entry>;
    fn lookup_out(k: &Self::Key) -> Option<*mut Self::Entry>;
    fn claim_in(k: &Self::Key, e: &Self::Entry) -> bool;
    fn put_in(k: &Self::Key, e: &Self::Entry) -> bool;
    fn put_out(k: &Self::Key, e: &Self::Entry) -> bool;
    fn remove_in(k: &Self::Key);
    fn remove_out(k: &Self::Key);
    /// Refreshes an entry seen in a packet.
    fn touch(e: *mut Self::Entry, tcp_flags: u8);
    /// The socket tuple of a reply from `remote:rport` to `local:port`.
    fn tuple(remote: Self::Addr, rport: u16, local: Self::Addr, port: u16)
        -> (bpf_sock_tuple, u32);
}

pub struct V4;
pub struct V6;

macro_rules! conntrack_of {
    ($ct:ident, $key:ident, $entry:ident, $lookup_in:ident, $lookup_out:ident, $claim_in:ident,
     $put_in:ident, $put_out:ident, $remove_in:ident, $remove_out:ident, $touch:ident) => {
        fn key(
            saddr: Self::Addr,
            daddr: Self::Addr,
            sport: u16,
            dport: u16,
            proto: u8,
        ) -> Self::Key {
            $ct::$key(saddr, daddr, sport, dport, proto)
        }
        fn entry(addr: Self::Addr, port: u16, flags: u8, tcp_flags: u8) -> Self::Entry {
            $ct::$entry(addr, port, flags, tcp_flags)
        }
        fn outbound(
            reply: &Self::Entry,
            addr: Self::Addr,
            port: u16,
            tcp_flags: u8,
        ) -> Self::Entry {
            Self::Entry {
                port,
                addr,
                tcp_flags,
                ..*reply
            }
        }
        fn fields(e: *mut Self::Entry) -> (u8, Self::Addr, u16, u8) {
            // SAFETY: map value pointer from this program's lookup.
            unsafe { ((*e).tcp_flags, (*e).addr, (*e).port, (*e).flags) }
        }
        fn lookup_in(k: &Self::Key) -> Option<*mut Self::Entry> {
            $ct::$lookup_in(k)
        }
        fn lookup_out(k: &Self::Key) -> Option<*mut Self::Entry> {
            $ct::$lookup_out(k)
        }
        fn claim_in(k: &Self::Key, e: &Self::Entry) -> bool {
            $ct::$claim_in(k, e)
        }
        fn put_in(k: &Self::Key, e: &Self::Entry) -> bool {
            $ct::$put_in(k, e)
        }
        fn put_out(k: &Self::Key, e: &Self::Entry) -> bool {
            $ct::$put_out(k, e)
        }
        fn remove_in(k: &Self::Key) {
            $ct::$remove_in(k)
        }
        fn remove_out(k: &Self::Key) {
            $ct::$remove_out(k)
        }
        fn touch(e: *mut Self::Entry, tcp_flags: u8) {
            $ct::$touch(e, tcp_flags)
        }
    };
}

impl Family for V4 {
    type Addr = u32;
    type Key = CtKey;
    type Entry = CtEntry;
    conntrack_of!(
        ct4, key, entry, lookup_in, lookup_out, claim_in, put_in, put_out, remove_in, remove_out,
        touch
    );

    fn tuple(remote: u32, rport: u16, local: u32, port: u16) -> (bpf_sock_tuple, u32) {
        let tuple = bpf_sock_tuple {
            __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
                ipv4: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
                    saddr: remote,
                    daddr: local,
                    sport: rport,
                    dport: port,
                },
            },
        };
        let size = core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>();
        (tuple, size as u32)
    }
}

impl Family for V6 {
    type Addr = Addr6;
    type Key = CtKey6;
    type Entry = CtEntry6;
    conntrack_of!(
        ct6,
        key6,
        entry6,
        lookup_in6,
        lookup_out6,
        claim_in6,
        put_in6,
        put_out6,
        remove_in6,
        remove_out6,
        touch6
    );

    fn tuple(remote: Addr6, rport: u16, local: Addr6, port: u16) -> (bpf_sock_tuple, u32) {
        let tuple = bpf_sock_tuple {
            __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
                ipv6: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 {
                    saddr: remote,
                    daddr: local,
                    sport: rport,
                    dport: port,
                },
            },
        };
        let size = core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>();
        (tuple, size as u32)
    }
}

/// Is a host socket using local `port` toward `remote:rport`?
#[inline(always)]
fn host_socket_uses<F: Family>(
    ctx: &TcContext,
    proto: u8,
    remote: F::Addr,
    rport: u16,
    local: F::Addr,
    port: u16,
) -> bool {
    let (mut tuple, size) = F::tuple(remote, rport, local, port);
    let skb = ctx.skb.skb as *mut _;
    // SAFETY: a valid tuple of `size` bytes; every socket found is released.
    unsafe {
        let sk: *mut core::ffi::c_void = if proto == IPPROTO_TCP {
            bpf_skc_lookup_tcp(skb, &mut tuple, size, u64::MAX, 0) as *mut _
        } else {
            bpf_sk_lookup_udp(skb, &mut tuple, size, u64::MAX, 0) as *mut _
        };
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk);
    }
    true
}

/// A new masqueraded flow: the container `src:sport` toward `dst:dport`
/// (keyed `out_key`) leaves as `nat_addr` with a port of `ports` (first,
/// last, host order).
pub struct NewFlow<'a, F: Family> {
    pub proto: u8,
    pub src: F::Addr,
    pub dst: F::Addr,
    pub sport: u16,
    pub dport: u16,
    pub out_key: &'a F::Key,
    pub nat_addr: F::Addr,
    pub ports: (u16, u16),
    pub tcp_flags: u8,
}

/// Picks a free source port (or echo id) for a new masqueraded flow and
/// records both directions.
#[inline(always)]
pub fn allocate<F: Family>(ctx: &TcContext, f: &NewFlow<F>) -> Result<u16, DropReason> {
    let reply = F::entry(f.src, f.sport, CT_F_SNAT, 0);
    let span = u32::from(f.ports.1.saturating_sub(f.ports.0)) + 1;
    // SAFETY: helper without arguments.
    let start = unsafe { bpf_get_prandom_u32() };
    // SCTP's CRC32c covers the ports, which incremental updates cannot
    // fix: its source port is kept and only the address is translated.
    let attempts = if f.proto == IPPROTO_SCTP {
        1
    } else {
        SNAT_ATTEMPTS
    };
    for i in 0..attempts {
        let port = if f.proto == IPPROTO_SCTP {
            f.sport
        } else {
            ((u32::from(f.ports.0) + start.wrapping_add(i) % span) as u16).to_be()
        };
        let in_key = F::key(f.dst, f.nat_addr, f.dport, port, f.proto);
        if (f.proto == IPPROTO_TCP || f.proto == IPPROTO_UDP)
            && host_socket_uses::<F>(ctx, f.proto, f.dst, f.dport, f.nat_addr, port)
        {
            continue;
        }
        let claimed = F::claim_in(&in_key, &reply)
            || (f.proto == IPPROTO_TCP
                && f.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
                && take_over_closed::<F>(&in_key, &reply, f.dst, f.dport));
        if claimed {
            let entry = F::outbound(&reply, f.nat_addr, port, f.tcp_flags);
            if !F::put_out(f.out_key, &entry) {
                F::remove_in(&in_key);
                return Err(DropReason::CtInsert);
            }
            return Ok(port);
        }
    }
    Err(DropReason::NatExhausted)
}

/// The NAT port of a masqueraded flow leaving: the tracked flow's
/// (`tracked`: its outbound entry) while it still has the uplink's address,
/// else a new one (the stale reply entry of an address that changed under
/// the flow goes). `true` with a port just allocated.
#[inline(always)]
pub fn port_for<F: Family>(
    ctx: &TcContext,
    tracked: Option<*mut F::Entry>,
    f: &NewFlow<F>,
) -> Result<(u16, bool), DropReason> {
    if let Some(e) = tracked {
        let (_, addr, port, _) = F::fields(e);
        if addr == f.nat_addr {
            F::touch(e, f.tcp_flags);
            return Ok((port, false));
        }
        // The uplink address changed under this flow.
        F::remove_in(&F::key(f.dst, addr, f.dport, port, f.proto));
    }
    allocate(ctx, f).map(|port| (port, true))
}

/// A new connection may reuse the NAT port of a masqueraded TCP flow that
/// has ended (RST either way, or FIN both ways), as TIME_WAIT reuse does;
/// without it a busy client would run out of ports to one server within
/// the closed-flow timeout.
#[inline(always)]
fn take_over_closed<F: Family>(
    in_key: &F::Key,
    reply: &F::Entry,
    remote: F::Addr,
    rport: u16,
) -> bool {
    let Some(old) = F::lookup_in(in_key) else {
        return false;
    };
    let (theirs, addr, port, flags) = F::fields(old);
    if flags & CT_F_SNAT == 0 || flags & CT_F_DNAT != 0 {
        return false;
    }
    let old_out = F::key(addr, remote, port, rport, IPPROTO_TCP);
    // An evicted outbound half counts as closed: the flow cannot go on.
    let ours = F::lookup_out(&old_out).map_or(TCP_RST, |e| F::fields(e).0);
    if !tcp_flow_closed(ours, theirs) {
        return false;
    }
    F::remove_out(&old_out);
    F::put_in(in_key, reply)
}
