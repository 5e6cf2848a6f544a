//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! nearly every value is read from BPF maps at scrape time, so a registry
//! of live metric objects (what `prometheus-client` offers, in OpenMetrics
//! form) would add more code than the format itself.
use std::fmt::Write;

/// The content type of what [`Exposition::finish`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One scrape's text, family by family.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample line of the current family.
    pub fn sample(&mut self, name: &str, labels: Labels, value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels);
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// The samples of one histogram series: cumulative `_bucket`s with
    /// their `le` bounds (the last is `+Inf`), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: Labels,
        bounds: &[f64],
        cumulative: &[u64],
        sum: f64,
    ) -> &mut Self {
        let count = cumulative.last().copied().unwrap_or(0);
        let bucket = format!("{name}_bucket");
        for (i, n) in cumulative.iter().enumerate() {
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *n as f64);
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: Labels) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

/// Integers without a fraction, as Prometheus writes them.
fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::default();
        e.family(
            "netd_drops_total",
            "Dropped packets\nby reason.",
            Kind::Counter,
        )
        .sample("netd_drops_total", &[("reason", "a\"b\\c")], 3.0);
        e.single("netd_up", "Up.", Kind::Gauge, 0.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP netd_drops_total Dropped packets\\nby reason.\n\
             # TYPE netd_drops_total counter\n\
             netd_drops_total{reason=\"a\\\"b\\\\c\"} 3\n\
             # HELP netd_up Up.\n# TYPE netd_up gauge\nnetd_up 0.5\n"
        );
    }

    #[test]
    fn histogram_buckets_end_in_inf_and_count() {
        let mut e = Exposition::default();
        e.family("h_seconds", "H.", Kind::Histogram).histogram(
            "h_seconds",
            &[("route", "/x")],
            &[0.1, 1.0],
            &[1, 2, 3],
            1.5,
        );
        let text = e.finish();
        assert!(text.contains("h_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n"));
        assert!(text.contains("h_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("h_seconds_count{route=\"/x\"} 3\n"));
        assert!(text.contains("h_seconds_sum{route=\"/x\"} 1.5\n"));
    }
}
