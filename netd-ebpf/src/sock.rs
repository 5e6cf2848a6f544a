//! Host processes to published ports (`connect4`, `sendmsg4`, `recvmsg4`,
//! `getpeername4` and their IPv6 twins on the configured cgroup): the
//! destination is translated at the socket, so no packet is rewritten and
//! 127.0.0.1 and ::1 work. Only sockets of the agent's
//! own network namespace are touched (netns cookie), so an agent in a test
//! namespace never changes another namespace's traffic.
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, map},
    maps::{Array, LruHashMap},
    programs::SockAddrContext,
};
use netd_common::{
    Addr6, PublishTarget, PublishTarget6, SockConfig, SockOriginKey, SockOriginKey6,
    MAX_SOCK_ORIGINS,
};

use crate::{
    parse::{IPPROTO_TCP, IPPROTO_UDP},
    publish, publish6,
};

/// Slot 0: the agent's netns cookie.
#[map(name = "SOCK_CONFIG")]
static SOCK_CONFIG: Array<SockConfig> = Array::pinned(1, 0);

/// (socket, target) -> the published address the program rewrote.
#[map(name = "SOCK_ORIGIN")]
static SOCK_ORIGIN: LruHashMap<SockOriginKey, PublishTarget> =
    LruHashMap::pinned(MAX_SOCK_ORIGINS, 0);

/// (socket, IPv6 target) -> the published IPv6 address the program rewrote.
#[map(name = "SOCK_ORIGIN6")]
static SOCK_ORIGIN6: LruHashMap<SockOriginKey6, PublishTarget6> =
    LruHashMap::pinned(MAX_SOCK_ORIGINS, 0);

/// Allow the operation (cgroup sock_addr programs never refuse here).
const ALLOW: i32 = 1;

#[inline(always)]
fn in_agent_netns(ctx: &SockAddrContext) -> bool {
    let Some(cfg) = SOCK_CONFIG.get(0) else {
        return false;
    };
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr as *mut _) };
    cfg.netns_cookie != 0 && cookie == cfg.netns_cookie
}

#[inline(always)]
fn is_loopback(addr: u32) -> bool {
    addr.to_ne_bytes()[0] == 127
}

/// Rewrites the socket's destination when it is a published port of a host
/// address; returns the original (address, port) when it did.
#[inline(always)]
fn translate(ctx: &SockAddrContext, proto: u8) -> Option<(u32, u16, PublishTarget)> {
    if !in_agent_netns(ctx) {
        return None;
    }
    let sa = ctx.sock_addr;
    // SAFETY: fields of the context the kernel handed us.
    let (addr, port) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16) };
    if !is_loopback(addr) && !publish::is_host_addr(addr) {
        return None;
    }
    let target = publish::lookup(addr, port, proto)?;
    unsafe {
        (*sa).user_ip4 = target.addr;
        (*sa).user_port = u32::from(target.port);
    }
    Some((addr, port, target))
}

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: field of the context.
    let proto = unsafe { (*ctx.sock_addr).protocol } as u8;
    if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        if let Some((addr, port, target)) = translate(&ctx, proto) {
            remember(&ctx, addr, port, &target);
        }
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some((addr, port, target)) = translate(&ctx, IPPROTO_UDP) {
        remember(&ctx, addr, port, &target);
    }
    ALLOW
}

/// Replies from the target show up as coming from the published address.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore(&ctx);
    ALLOW
}

/// A connected socket's peer is the published address it dialled.
#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    restore(&ctx);
    ALLOW
}

/// Shows the published address instead of the target it was rewritten to.
#[inline(always)]
fn restore(ctx: &SockAddrContext) {
    if !in_agent_netns(ctx) {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the helper takes the program's context; fields of the context.
    let key = unsafe {
        SockOriginKey {
            cookie: bpf_get_socket_cookie(sa as *mut _),
            addr: (*sa).user_ip4,
            port: (*sa).user_port as u16,
            _pad: 0,
        }
    };
    if let Some(origin) = unsafe { SOCK_ORIGIN.get(&key) } {
        unsafe {
            (*sa).user_ip4 = origin.addr;
            (*sa).user_port = u32::from(origin.port);
        }
    }
}

#[inline(always)]
fn remember(ctx: &SockAddrContext, addr: u32, port: u16, target: &PublishTarget) {
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    let key = SockOriginKey {
        cookie,
        addr: target.addr,
        port: target.port,
        _pad: 0,
    };
    let origin = PublishTarget {
        addr,
        port,
        _pad: 0,
    };
    let _ = SOCK_ORIGIN.insert(&key, &origin, 0);
}

/// ::1.
#[inline(always)]
fn is_loopback6(a: Addr6) -> bool {
    a == [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])]
}

/// The context's IPv6 address (word by word: the verifier's access size).
#[inline(always)]
fn user_ip6(ctx: &SockAddrContext) -> Addr6 {
    let sa = ctx.sock_addr;
    // SAFETY: fields of the context the kernel handed us.
    unsafe {
        [
            core::ptr::read_volatile(&(*sa).user_ip6[0]),
            core::ptr::read_volatile(&(*sa).user_ip6[1]),
            core::ptr::read_volatile(&(*sa).user_ip6[2]),
            core::ptr::read_volatile(&(*sa).user_ip6[3]),
        ]
    }
}

#[inline(always)]
fn set_user6(ctx: &SockAddrContext, addr: Addr6, port: u16) {
    let sa = ctx.sock_addr;
    // SAFETY: writable fields of the context.
    unsafe {
        core::ptr::write_volatile(&mut (*sa).user_ip6[0], addr[0]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[1], addr[1]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[2], addr[2]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[3], addr[3]);
        (*sa).user_port = u32::from(port);
    }
}

/// The third word of an IPv4-mapped address, `::ffff:0:0/96`.
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The IPv4 address of `::ffff:a.b.c.d` (an IPv4 peer of an IPv6 socket).
#[inline(always)]
fn mapped_v4(a: Addr6) -> Option<u32> {
    (a[0] == 0 && a[1] == 0 && a[2] == MAPPED).then_some(a[3])
}

/// [`translate`] for IPv6 sockets: `[::1]` and the host's IPv6 addresses,
/// and `[::ffff:a.b.c.d]` for a loopback or host IPv4 address (an IPv6
/// socket's IPv4 peer: the kernel connects it by IPv4 without running the
/// connect4 hook, so the IPv4 published ports are looked up here).
#[inline(always)]
fn translate6(ctx: &SockAddrContext, proto: u8) -> Option<(Addr6, u16, PublishTarget6)> {
    if !in_agent_netns(ctx) {
        return None;
    }
    let addr = user_ip6(ctx);
    // SAFETY: field of the context.
    let port = unsafe { (*ctx.sock_addr).user_port } as u16;
    if let Some(v4) = mapped_v4(addr) {
        if !is_loopback(v4) && !publish::is_host_addr(v4) {
            return None;
        }
        let t = publish::lookup(v4, port, proto)?;
        let target = PublishTarget6 {
            addr: [0, 0, MAPPED, t.addr],
            port: t.port,
            _pad: 0,
        };
        set_user6(ctx, target.addr, target.port);
        return Some((addr, port, target));
    }
    if !is_loopback6(addr) && !publish6::is_host_addr6(addr) {
        return None;
    }
    let target = publish6::lookup6(addr, port, proto)?;
    set_user6(ctx, target.addr, target.port);
    Some((addr, port, target))
}

#[inline(always)]
fn remember6(ctx: &SockAddrContext, addr: Addr6, port: u16, target: &PublishTarget6) {
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    let key = SockOriginKey6 {
        cookie,
        addr: target.addr,
        port: target.port,
        _pad: [0; 6],
    };
    let origin = PublishTarget6 {
        addr,
        port,
        _pad: 0,
    };
    let _ = SOCK_ORIGIN6.insert(&key, &origin, 0);
}

/// Shows the published IPv6 address instead of the target.
#[inline(always)]
fn restore6(ctx: &SockAddrContext) {
    if !in_agent_netns(ctx) {
        return;
    }
    // SAFETY: the helper takes the program's context; field of the context.
    let key = unsafe {
        SockOriginKey6 {
            cookie: bpf_get_socket_cookie(ctx.sock_addr as *mut _),
            addr: user_ip6(ctx),
            port: (*ctx.sock_addr).user_port as u16,
            _pad: [0; 6],
        }
    };
    // SAFETY: the value lives in the map.
    if let Some(origin) = unsafe { SOCK_ORIGIN6.get(&key) } {
        let (addr, port) = (origin.addr, origin.port);
        set_user6(ctx, addr, port);
        return;
    }
    // An IPv4 peer of an IPv6 UDP socket: its datagram left by the IPv4
    // path, whose sendmsg4 remembered it under its IPv4 target.
    let Some(v4) = mapped_v4(key.addr) else {
        return;
    };
    let key4 = SockOriginKey {
        cookie: key.cookie,
        addr: v4,
        port: key.port,
        _pad: 0,
    };
    // SAFETY: the value lives in the map.
    if let Some(origin) = unsafe { SOCK_ORIGIN.get(&key4) } {
        let (addr, port) = (origin.addr, origin.port);
        set_user6(ctx, [0, 0, MAPPED, addr], port);
    }
}

#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: field of the context.
    let proto = unsafe { (*ctx.sock_addr).protocol } as u8;
    if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        if let Some((addr, port, target)) = translate6(&ctx, proto) {
            remember6(&ctx, addr, port, &target);
        }
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    if let Some((addr, port, target)) = translate6(&ctx, IPPROTO_UDP) {
        remember6(&ctx, addr, port, &target);
    }
    ALLOW
}

/// Replies from the target show up as coming from the published address.
#[cgroup_sock_addr(recvmsg6)]
pub fn sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    restore6(&ctx);
    ALLOW
}

/// A connected socket's peer is the published address it dialled.
#[cgroup_sock_addr(getpeername6)]
pub fn sock_getpeername6(ctx: SockAddrContext) -> i32 {
    restore6(&ctx);
    ALLOW
}
