//! Reading a packet, whichever hook holds it: the parsers take any
//! [`Packet`], so TC programs and the XDP prefilter share them. Reads go
//! through the kernel's load helpers, which check bounds at run time and
//! reach into non-linear data, so variable offsets (IPv6 extension
//! headers, IP options) need no verifier-visible bounds.
use aya_ebpf::{
    helpers::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

pub trait Packet {
    /// `size_of::<T>()` bytes at `off`, or `None` past the end.
    fn read<T: Copy>(&self, off: usize) -> Option<T>;
    /// Bytes in the packet, from the Ethernet header on.
    fn length(&self) -> usize;
}

impl Packet for TcContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        self.load(off).ok()
    }

    #[inline(always)]
    fn length(&self) -> usize {
        self.len() as usize
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        let mut out = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes at most size_of::<T>() bytes into `out`
        // and fails (non-zero) unless it wrote all of them.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.ctx,
                off as u32,
                out.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
            )
        };
        // SAFETY: fully written when the helper succeeded.
        (rc == 0).then(|| unsafe { out.assume_init() })
    }

    #[inline(always)]
    fn length(&self) -> usize {
        // SAFETY: plain helper call on this program's context.
        unsafe { bpf_xdp_get_buff_len(self.ctx) as usize }
    }
}
