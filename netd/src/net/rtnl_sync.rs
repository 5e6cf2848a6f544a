//! A blocking rtnetlink socket for the few requests the datapath sends
//! from its own (synchronous) code: traffic-control qdiscs and filters.
//! One request at a time; each answers with an acknowledgement (or an
//! error the kernel names) or, for a dump, with every message of it.
use std::io;

use rtnetlink::{
    packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
    },
    packet_route::RouteNetlinkMessage,
    sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr},
};

pub struct SyncRtnl {
    socket: Socket,
    seq: u32,
}

impl SyncRtnl {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_ext_ack(true).ok();
        Ok(Self { socket, seq: 0 })
    }

    /// Sends `msg` with `flags` (plus REQUEST and ACK) and waits for the
    /// kernel's acknowledgement. A refusal comes back as the kernel's errno.
    pub fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags | NLM_F_ACK).map(drop)
    }

    /// Sends a request that the kernel answers with messages (a dump when
    /// `flags` has `NLM_F_DUMP`, one message for a get).
    pub fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, flags)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let wants_ack = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut at = 0;
            while at + 16 <= data.len() {
                let len = u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
                    as usize;
                if len < 16 || at + len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a truncated netlink message from the kernel",
                    ));
                }
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..at + len])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                at += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && !wants_ack {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
