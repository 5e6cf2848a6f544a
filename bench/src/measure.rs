//! One measurement = one client process inside the client's netns: iperf3
//! for throughput, `bench rr` / `bench crr` for transaction and connection
//! rates. Plus the statistics over repetitions.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::load::LoadResult;
use crate::sys;
use crate::topo::{Ctx, Target};

/// TCP throughput in Gbit/s (iperf3, one stream, receiver side).
pub fn iperf(t: &Target, secs: u32) -> Result<f64> {
    let to = t.iperf;
    let mut c = sys::load_cmd(&t.client_ns, t.cgroup.as_deref(), "iperf3");
    c.args(["-c", &to.ip().to_string(), "-p", &to.port().to_string()])
        .args(["-t", &secs.to_string(), "-J", "--connect-timeout", "3000"]);
    let out = sys::output(&mut c, Duration::from_secs(u64::from(secs) + 20))?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("iperf3 to {to} printed no JSON: {}", out.stderr.trim()))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3 to {to}: {e}");
    }
    let bps = v
        .pointer("/end/sum_received/bits_per_second")
        .and_then(|b| b.as_f64())
        .with_context(|| format!("iperf3 to {to}: no end.sum_received in its JSON"))?;
    Ok(bps / 1e9)
}

/// `bench rr|crr --addr TO --secs S` as the client of `t`.
pub fn load(ctx: &Ctx, t: &Target, mode: &str, secs: f64) -> Result<LoadResult> {
    let to = t.rr;
    let mut c = sys::load_cmd(&t.client_ns, t.cgroup.as_deref(), &ctx.exe);
    c.args([
        mode,
        "--addr",
        &to.to_string(),
        "--secs",
        &format!("{secs}"),
    ]);
    let out = sys::output(&mut c, Duration::from_secs_f64(secs + 30.0))?;
    if !out.success {
        bail!("{mode} to {to}: {}", out.stderr.trim());
    }
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("{mode} to {to}: bad output {:?}", out.stdout))
}

/// Samples of one figure over repetitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    pub samples: Vec<f64>,
}

impl Series {
    pub fn push(&mut self, v: f64) {
        self.samples.push(v);
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s
    }

    pub fn median(&self) -> Option<f64> {
        let s = self.sorted();
        match s.len() {
            0 => None,
            n if n % 2 == 1 => Some(s[n / 2]),
            n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// "median [min–max]" with `prec` decimals, or "—".
    pub fn show(&self, prec: usize) -> String {
        match (self.median(), self.min(), self.max()) {
            (Some(m), Some(lo), Some(hi)) if self.samples.len() > 1 => {
                format!("{} [{}–{}]", num(m, prec), num(lo, prec), num(hi, prec))
            }
            (Some(m), _, _) => num(m, prec),
            _ => "—".into(),
        }
    }
}

/// A number with thousands separators (when it has no decimals).
pub fn num(v: f64, prec: usize) -> String {
    if prec > 0 {
        return format!("{v:.prec$}");
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Series {
            samples: vec![3.0, 1.0, 2.0, 10.0],
        };
        assert_eq!(s.median(), Some(2.5));
        assert_eq!(s.min(), Some(1.0));
        assert_eq!(s.max(), Some(10.0));
        assert_eq!(num(1234567.0, 0), "1,234,567");
        assert_eq!(num(123.0, 0), "123");
        assert_eq!(Series::default().show(1), "—");
    }
}
