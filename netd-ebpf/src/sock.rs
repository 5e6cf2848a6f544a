//! Host processes to published ports (`connect4`, `sendmsg4`, `recvmsg4` on
//! the configured cgroup): the destination is translated at the socket, so
//! no packet is rewritten and 127.0.0.1 works. Only sockets of the agent's
//! own network namespace are touched (netns cookie), so an agent in a test
//! namespace never changes another namespace's traffic.
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, map},
    maps::{Array, LruHashMap},
    programs::SockAddrContext,
};
use netd_common::{PublishTarget, SockConfig, SockOriginKey, MAX_SOCK_ORIGINS};

use crate::{
    parse::{IPPROTO_TCP, IPPROTO_UDP},
    publish,
};

/// Slot 0: the agent's netns cookie.
#[map(name = "SOCK_CONFIG")]
static SOCK_CONFIG: Array<SockConfig> = Array::pinned(1, 0);

/// (socket, target) -> the published address the program rewrote.
#[map(name = "SOCK_ORIGIN")]
static SOCK_ORIGIN: LruHashMap<SockOriginKey, PublishTarget> =
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
