//! Per-source limits, so that one container flooding the name service
//! cannot starve the others: a token bucket of queries per second and a cap
//! on the forwarded queries (and TCP connections) one source has open.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Sustained queries per second one source may send.
pub const RATE: f64 = 200.0;
/// Queries one source may send in a burst.
pub const BURST: f64 = 400.0;
/// Forwarded queries (or TCP connections) one source may have in flight.
pub const MAX_IN_FLIGHT: u32 = 32;
/// Buckets kept before idle ones are pruned.
const MAX_SOURCES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
    max_in_flight: u32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(RATE, BURST, MAX_IN_FLIGHT)
    }
}

/// One in-flight slot; released on drop.
pub struct Slot {
    src: IpAddr,
    in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.src) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.src);
            }
        }
    }
}

impl Limiter {
    pub fn new(rate: f64, burst: f64, max_in_flight: u32) -> Limiter {
        Limiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            max_in_flight,
        }
    }

    /// Takes one token for `src`; false when its bucket is empty.
    pub fn allow(&self, src: IpAddr) -> bool {
        self.allow_at(src, Instant::now())
    }

    pub fn allow_at(&self, src: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&src) {
            // Forget sources whose bucket has refilled: they are idle.
            let full = self.burst / self.rate;
            buckets.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full);
            if buckets.len() >= MAX_SOURCES {
                buckets.clear();
            }
        }
        let b = buckets.entry(src).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Reserves one in-flight slot for `src`, if it has one left.
    pub fn begin(&self, src: IpAddr) -> Option<Slot> {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(src).or_insert(0);
        if *n >= self.max_in_flight {
            return None;
        }
        *n += 1;
        Some(Slot {
            src,
            in_flight: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_rate() {
        let l = Limiter::new(10.0, 5.0, 2);
        let t0 = Instant::now();
        let a = ip("172.18.0.2");
        let allowed = (0..100).filter(|_| l.allow_at(a, t0)).count();
        assert_eq!(allowed, 5, "the burst, then nothing");
        // After 1 s: 10 more tokens, capped at the burst of 5.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow_at(a, t1)).count(), 5);
        // After 0.3 s: 3 tokens.
        let t2 = t1 + Duration::from_millis(300);
        assert_eq!((0..100).filter(|_| l.allow_at(a, t2)).count(), 3);
    }

    #[test]
    fn one_source_does_not_starve_another() {
        let l = Limiter::new(10.0, 5.0, 2);
        let t0 = Instant::now();
        let (a, b) = (ip("172.18.0.2"), ip("172.18.0.3"));
        for _ in 0..1000 {
            l.allow_at(a, t0);
        }
        assert!(!l.allow_at(a, t0));
        assert!(l.allow_at(b, t0), "another source keeps its own bucket");
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let l = Limiter::new(10.0, 5.0, 2);
        let t0 = Instant::now() + Duration::from_secs(5);
        let a = ip("172.18.0.2");
        assert!(l.allow_at(a, t0));
        assert!(l.allow_at(a, t0 - Duration::from_secs(3)));
    }

    #[test]
    fn many_sources_are_pruned() {
        let l = Limiter::new(10.0, 5.0, 2);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            assert!(l.allow_at(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_SOURCES);
    }

    #[test]
    fn in_flight_cap_per_source() {
        let l = Limiter::new(10.0, 5.0, 2);
        let (a, b) = (ip("172.18.0.2"), ip("172.18.0.3"));
        let s1 = l.begin(a).unwrap();
        let _s2 = l.begin(a).unwrap();
        assert!(l.begin(a).is_none());
        assert!(l.begin(b).is_some());
        drop(s1);
        assert!(l.begin(a).is_some());
    }
}
