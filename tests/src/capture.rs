//! Checksums as a receiver checks them: [`Capture`] runs `tcpdump -n -vv`
//! on an interface of a netns and reports the packets whose TCP, UDP,
//! ICMP or ICMPv6 checksum it found wrong; [`ethtool_off`] turns checksum
//! offload off on a veth so that the capture sees complete checksums
//! (with offload a veth carries partial ones tcpdump cannot verify).
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cmd::run_timeout;
use crate::netns::path_of;
use crate::Bed;

/// What a finished [`Capture`] found.
#[derive(Debug)]
pub struct Checksums {
    /// The lines tcpdump found a bad checksum in.
    pub bad: Vec<String>,
    /// It verified a TCP checksum (`(correct)`).
    pub tcp_ok: bool,
    /// It verified a UDP checksum (`udp sum ok`).
    pub udp_ok: bool,
    /// It verified an ICMPv6 checksum (`icmp6 sum ok`).
    pub icmp6_ok: bool,
}

/// `tcpdump -n -vv` on an interface of a netns (TCP, UDP, ICMP and
/// ICMPv6), output into a file of the bed; killed (by its pid) on drop.
pub struct Capture {
    child: Child,
    out: PathBuf,
}

impl Capture {
    /// Starts tcpdump on `dev` in netns `ns` and waits until it listens.
    pub fn start(bed: &Bed, ns: &str, dev: &str) -> Capture {
        let out = bed.dir().join(format!("capture-{ns}-{dev}.txt"));
        let file = std::fs::File::create(&out).unwrap();
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", path_of(ns).display()))
            .args([
                "tcpdump",
                "-n",
                "-vv",
                "-l",
                "-i",
                dev,
                "tcp or udp or icmp or icmp6",
            ])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning tcpdump");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        let mut cap = Capture { child, out };
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            cap.stop();
            panic!("tcpdump on {ns}/{dev} did not start");
        }
        cap
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Stops the capture and reads what tcpdump verified.
    pub fn checksums(mut self) -> Checksums {
        std::thread::sleep(Duration::from_millis(300));
        self.stop();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let bad = text
            .lines()
            .filter(|l| {
                l.contains("incorrect")
                    || l.contains("bad udp cksum")
                    || l.contains("bad cksum")
                    || l.contains("wrong icmp cksum")
                    || l.contains("bad icmp6 cksum")
            })
            .map(str::to_string)
            .collect();
        Checksums {
            bad,
            tcp_ok: text.contains("(correct)"),
            udp_ok: text.contains("udp sum ok"),
            icmp6_ok: text.contains("icmp6 sum ok"),
        }
    }

    /// Stops the capture; returns the lines tcpdump found a bad checksum
    /// in and whether it verified TCP and UDP checksums at all.
    pub fn finish(self) -> (Vec<String>, bool, bool) {
        let c = self.checksums();
        (c.bad, c.tcp_ok, c.udp_ok)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Turns tx and rx checksum offload off on `dev` in netns `ns`.
pub fn ethtool_off(ns: &str, dev: &str) {
    let out = run_timeout(
        "ip",
        &[
            "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
        ],
        Duration::from_secs(10),
    );
    assert!(
        out.success(),
        "turning checksum offload off (needs the ethtool package):\n{out}"
    );
}
