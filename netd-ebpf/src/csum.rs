//! One's complement checksum arithmetic (RFC 1624) on values the programs
//! hold, for checksums inside packet data the kernel helpers do not keep
//! (the transport checksum of a packet quoted by an ICMPv6 error), and the
//! differences the helpers fold in (`bpf_l4_csum_replace` by difference).
//! Values are 16-bit words as read from the packet (`from_ne_bytes`): the
//! sum does not depend on the byte order as long as it is the same.
use netd_common::Addr6;

/// The difference `new - old` of one 16-bit word, as a partial sum.
#[inline(always)]
pub fn diff16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// The difference `new - old` of an IPv6 address, as a partial sum.
#[inline(always)]
pub fn diff_addr6(old: Addr6, new: Addr6) -> u32 {
    let mut sum = 0u32;
    for i in 0..4 {
        let (o, n) = (old[i], new[i]);
        sum += diff16(o as u16, n as u16) + diff16((o >> 16) as u16, (n >> 16) as u16);
    }
    sum
}

/// Folds a partial sum into 16 bits.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Checksum `check` of data that changed by `diff` (RFC 1624, eqn. 3).
#[inline(always)]
pub fn update(check: u16, diff: u32) -> u16 {
    !fold(u64::from(!check) + u64::from(diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of 16-bit words, from scratch.
    fn full(words: &[u16]) -> u16 {
        !fold(words.iter().map(|w| u64::from(*w)).sum())
    }

    fn words(a: Addr6) -> [u16; 8] {
        let mut out = [0; 8];
        for i in 0..4 {
            out[2 * i] = a[i] as u16;
            out[2 * i + 1] = (a[i] >> 16) as u16;
        }
        out
    }

    #[test]
    fn incremental_update_matches_a_full_sum() {
        let old: Addr6 = [0x0db8_0120, 0x0000_95aa, 0x1234_0000, 0xffff_0002];
        let new: Addr6 = [0x00fd, 0x0a00, 0, 0x0200_0000];
        let (port_old, port_new) = (0xbeef, 0xee1f);
        let rest = [0x1111u16, 0x0006, 0xfffe];
        let mut before: Vec<u16> = words(old).to_vec();
        before.push(port_old);
        before.extend_from_slice(&rest);
        let mut after: Vec<u16> = words(new).to_vec();
        after.push(port_new);
        after.extend_from_slice(&rest);
        let diff = diff_addr6(old, new) + diff16(port_old, port_new);
        assert_eq!(update(full(&before), diff), full(&after));
        // And back again.
        let back = diff_addr6(new, old) + diff16(port_new, port_old);
        assert_eq!(update(full(&after), back), full(&before));
    }

    #[test]
    fn no_change_keeps_the_checksum() {
        let a: Addr6 = [1, 2, 3, 4];
        assert_eq!(update(0x1234, diff_addr6(a, a)), 0x1234);
    }
}
