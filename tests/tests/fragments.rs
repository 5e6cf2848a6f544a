//! A UDP reply larger than the MTU reaches a masqueraded container in
//! fragments: the later ones carry no ports and must follow the first.
use std::{net::UdpSocket, time::Duration};

use netd_tests::{
    bed::Bed,
    netns::{join, spawn_in},
};

const REPLY_LEN: usize = 4000;

#[test]
fn fragmented_udp_reply_reaches_a_masqueraded_container() {
    let (bed, world) = Bed::with_world(&[]);
    bed.network("n1", &["--subnet", "10.99.1.0/24"]);
    let c = bed.container("c", &["--network", "n1"]);

    // The world answers every datagram with REPLY_LEN bytes (fragmented on
    // its 1500-byte link) and reports who asked.
    let server = spawn_in(&world, || {
        let s = UdpSocket::bind("203.0.113.1:9053")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        let (_, peer) = s.recv_from(&mut buf)?;
        s.send_to(&[0x5a; REPLY_LEN], peer)?;
        Ok(peer)
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = spawn_in(&c.ns, || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(b"big please", "203.0.113.1:9053")?;
        let mut buf = vec![0u8; REPLY_LEN + 100];
        let n = s.recv(&mut buf)?;
        Ok(n)
    });
    let peer = join(server).expect("server");
    assert_eq!(
        peer.ip().to_string(),
        "203.0.113.2",
        "the request was masqueraded"
    );
    let got = join(client).expect("the fragmented reply must arrive whole");
    assert_eq!(got, REPLY_LEN);
}
