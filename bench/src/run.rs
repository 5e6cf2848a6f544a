//! The benchmark run: the datapath matrix, the published-port scale test and
//! the control-plane test, in that order; then the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::measure::{self, Series};
use crate::report;
use crate::sys::{self, Netns, RunDir};
use crate::topo::{Agent, Ctx, Dp, Kind, PathKind, Target};

/// How much of everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub mode: String,
    pub reps: usize,
    pub iperf_secs: u32,
    pub load_secs: f64,
    pub scale_levels: Vec<usize>,
    pub scale_reps: usize,
    /// Container adds whose latency is reported, and the total brought up.
    pub cp_latency_n: usize,
    pub cp_total_n: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                mode: "quick".into(),
                reps: 3,
                iperf_secs: 1,
                load_secs: 0.5,
                scale_levels: vec![0, 1000],
                scale_reps: 3,
                cp_latency_n: 50,
                cp_total_n: 100,
            }
        } else {
            Plan {
                mode: "full".into(),
                reps: 5,
                iperf_secs: 2,
                load_secs: 2.0,
                scale_levels: vec![0, 1000, 10000],
                scale_reps: 5,
                cp_latency_n: 200,
                cp_total_n: 1000,
            }
        }
    }
}

/// One path on one datapath.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub path: PathKind,
    pub dp: Kind,
    /// Why it was not measured.
    pub na: Option<String>,
    /// How the datapath does this path differently.
    pub note: Option<String>,
    #[serde(flatten)]
    pub m: Measured,
    /// netd drop counters that rose while this cell was measured.
    pub netd_drops: std::collections::BTreeMap<String, u64>,
}

impl Cell {
    fn new(path: PathKind, dp: Kind) -> Cell {
        Cell {
            path,
            dp,
            na: None,
            note: None,
            m: Measured::default(),
            netd_drops: Default::default(),
        }
    }
}

/// The figures of one path on one datapath, over the repetitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    pub gbps: Series,
    pub tps: Series,
    pub cps: Series,
    pub p50_us: Series,
    pub p99_us: Series,
    pub crr_errors: u64,
    pub errors: Vec<String>,
}

/// One repetition of throughput (iperf3), transactions (rr) and
/// connections (crr) on `t`.
pub(crate) fn measure_rep(plan: &Plan, ctx: &Ctx, t: &Target, m: &mut Measured) -> Result<()> {
    match measure::iperf(t, plan.iperf_secs) {
        Ok(g) => m.gbps.push(g),
        Err(e) => m.errors.push(format!("iperf3: {}", short_err(&e))),
    }
    sys::check()?;
    match measure::load(ctx, t, "rr", plan.load_secs) {
        Ok(r) => {
            m.tps.push(r.rate);
            m.p50_us.push(r.p50_us);
            m.p99_us.push(r.p99_us);
        }
        Err(e) => m.errors.push(format!("rr: {}", short_err(&e))),
    }
    sys::check()?;
    match measure::load(ctx, t, "crr", plan.load_secs) {
        Ok(r) => {
            m.cps.push(r.rate);
            m.crr_errors += r.errors;
            if let Some(e) = r.first_error {
                m.errors
                    .push(format!("crr: {} failed connections, first: {e}", r.errors));
            }
        }
        Err(e) => m.errors.push(format!("crr: {}", short_err(&e))),
    }
    Ok(())
}

/// One scale level on one datapath.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRow {
    pub dp: Kind,
    pub ports: usize,
    pub na: Option<String>,
    /// Seconds to load the filler ports of this level (bulk).
    pub fill_s: Option<f64>,
    pub probe_port: Option<u16>,
    pub tps: Series,
    pub p99_us: Series,
    pub cps: Series,
    pub c2c_cps: Series,
    pub publish_ms: Series,
    pub plain_add_ms: Series,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Control {
    pub na: Option<String>,
    pub latency_n: usize,
    pub total_n: usize,
    /// Wall time of each sequential `netd container add`, in order, ms.
    pub add_ms: Vec<f64>,
    /// Wall time of the sequential adds together.
    pub total_s: Option<f64>,
    /// `netd network ls` wall time: the CLI + API round-trip floor.
    pub cli_floor_ms: Series,
    /// Clients adding `concurrent_n` containers at once.
    #[serde(default)]
    pub clients: usize,
    #[serde(default)]
    pub concurrent_n: usize,
    /// Wall time from the first to the last of the concurrent adds.
    #[serde(default)]
    pub concurrent_s: Option<f64>,
    /// Wall time of each concurrent `container add`, ms.
    #[serde(default)]
    pub concurrent_add_ms: Series,
    /// `netd network ls` wall time while the clients add, ms.
    #[serde(default)]
    pub ls_while_adding_ms: Series,
    /// /proc/loadavg right before the concurrent adds.
    #[serde(default)]
    pub load_before_concurrent: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub os: String,
    pub iptables: String,
    pub iperf3: String,
    pub netd: String,
    pub commit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub plan: Plan,
    pub command: String,
    pub started: String,
    pub machine: Machine,
    pub matrix: Vec<Cell>,
    pub scale: Vec<ScaleRow>,
    pub control: Control,
    /// Cross-host container -> container: netd's overlay, kernel VXLAN +
    /// bridge, the underlay without encapsulation.
    #[serde(default)]
    pub overlay: Vec<crate::overlay::OverlayCell>,
    pub elapsed_s: f64,
    /// /proc/loadavg at the start and at the end: how busy the machine was.
    pub load_start: String,
    pub load_end: String,
}

pub struct Opts {
    pub quick: bool,
    /// Only the control-plane test (report `<mode>-control.*`).
    pub control_only: bool,
    pub netd: PathBuf,
    pub out: PathBuf,
    pub command: String,
    /// Only the cross-host comparison (no matrix, scale or control plane).
    pub overlay_only: bool,
}

pub fn run(opts: Opts) -> Result<()> {
    sys::install_signal_handlers()?;
    sys::clean_stale();
    let start = Instant::now();
    let mut plan = Plan::new(opts.quick);
    if opts.overlay_only {
        plan.mode = format!("{}-overlay", plan.mode);
    }
    if opts.control_only {
        plan.mode = format!("{}-control", plan.mode);
    }
    let dir = RunDir::create()?;
    let cgroup = sys::Cgroup::create()?;
    let ctx = Ctx {
        cgroup: cgroup.path.clone(),
        dir: dir.path.clone(),
        pids: dir.pids(),
        exe: std::env::current_exe().context("finding our own binary")?,
        netd: std::fs::canonicalize(&opts.netd)
            .with_context(|| format!("netd binary {}", opts.netd.display()))?,
    };
    let machine = machine(&ctx);
    let load_start = loadavg();
    let started = sys::run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .unwrap_or_default()
        .trim()
        .to_string();
    eprintln!(
        "bench: {} run: {} reps, iperf3 {} s, rr/crr {} s; run dir {}",
        plan.mode,
        plan.reps,
        plan.iperf_secs,
        plan.load_secs,
        ctx.dir.display()
    );

    let (matrix, scale) = if opts.overlay_only || opts.control_only {
        (Vec::new(), Vec::new())
    } else {
        let mut dps = Vec::new();
        let mut build_errors = Vec::new();
        for kind in Kind::ALL {
            sys::check()?;
            let t = Instant::now();
            match Dp::build(&ctx, kind) {
                Ok(dp) => {
                    eprintln!(
                        "bench: built {} topology in {:.1} s",
                        kind.label(),
                        t.elapsed().as_secs_f64()
                    );
                    dps.push(dp);
                }
                Err(e) => {
                    sys::check()?;
                    eprintln!(
                        "bench: building the {} topology failed: {e:#}",
                        kind.label()
                    );
                    build_errors.push((kind, format!("setup failed: {e:#}")));
                }
            }
        }
        let matrix = run_matrix(&plan, &dps, &build_errors)?;
        let scale = run_scale(&plan, &mut dps, &build_errors)?;
        eprintln!("bench: tearing down the datapath topologies");
        (matrix, scale)
    };
    let overlay = if opts.control_only {
        Vec::new()
    } else {
        crate::overlay::run(&plan, &ctx)?
    };
    let control = if opts.overlay_only {
        skipped_control(&plan)
    } else {
        run_control(&plan, &ctx)?
    };

    let results = Results {
        plan,
        command: opts.command,
        started,
        machine,
        matrix,
        scale,
        control,
        overlay,
        elapsed_s: start.elapsed().as_secs_f64(),
        load_start,
        load_end: loadavg(),
    };
    report::write(&results, &opts.out)?;
    eprintln!("bench: done in {:.0} s", results.elapsed_s);
    Ok(())
}

/// `bench report`: renders the markdown and the chart again from a run's
/// JSON (the numbers are the run's; only the presentation is redone).
pub fn rerender(json: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let r: Results =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    report::write(&r, out)
}

/// `bench hold`: one topology, held until `secs` pass or Ctrl-C.
pub fn hold(kind: &str, netd: PathBuf, secs: u64) -> Result<()> {
    sys::install_signal_handlers()?;
    sys::clean_stale();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.short() == kind)
        .with_context(|| format!("unknown kind {kind:?} (netd, netdk, ipt or bare)"))?;
    let dir = RunDir::create()?;
    let cgroup = sys::Cgroup::create()?;
    let ctx = Ctx {
        cgroup: cgroup.path.clone(),
        dir: dir.path.clone(),
        pids: dir.pids(),
        exe: std::env::current_exe().context("finding our own binary")?,
        netd: std::fs::canonicalize(&netd)
            .with_context(|| format!("netd binary {}", netd.display()))?,
    };
    let dp = Dp::build(&ctx, kind)?;
    println!(
        "host {}\nworld {}\nc1 {}\nc2 {}\ncgroup {}\nrun dir {}",
        dp.host,
        dp.world,
        dp.c1,
        dp.c2,
        ctx.cgroup.display(),
        ctx.dir.display()
    );
    for path in PathKind::ALL {
        match dp.target(path) {
            Ok(t) => println!(
                "{}: client in {} -> {} (iperf3 {})",
                path.short(),
                t.client_ns,
                t.rr,
                t.iperf
            ),
            Err(na) => println!("{}: {na}", path.short()),
        }
    }
    let end = Instant::now() + Duration::from_secs(secs.min(3600));
    while Instant::now() < end && !sys::interrupted() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn warmup(ctx: &Ctx, t: &Target) -> Result<()> {
    let mut last = None;
    // The first packets may wait for neighbour resolution: try a few times.
    for _ in 0..3 {
        match measure::load(ctx, t, "rr", 0.2) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        sys::check()?;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("warm-up failed")))
}

fn short_err(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    let s = s.lines().next().unwrap_or("").to_string();
    if s.len() > 200 {
        format!("{}…", &s[..200])
    } else {
        s
    }
}

fn run_matrix(plan: &Plan, dps: &[Dp], build_errors: &[(Kind, String)]) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    let mut targets = Vec::new();
    for path in PathKind::ALL {
        for kind in Kind::ALL {
            let mut cell = Cell::new(path, kind);
            let dp = dps.iter().find(|d| d.kind == kind);
            match (dp, build_errors.iter().find(|(k, _)| *k == kind)) {
                (Some(dp), _) => match dp.target(path) {
                    Ok(t) => {
                        sys::check()?;
                        cell.note = t.note.map(str::to_string);
                        match warmup(dp.ctx(), &t) {
                            Ok(()) => targets.push((cells.len(), dp, t)),
                            Err(e) => {
                                cell.na = Some(match t.unsupported {
                                    Some(why) => why.to_string(),
                                    None => format!("error: {}", short_err(&e)),
                                })
                            }
                        }
                    }
                    Err(na) => cell.na = Some(na),
                },
                (None, Some((_, e))) => cell.na = Some(e.clone()),
                (None, None) => cell.na = Some("not built".into()),
            }
            if let Some(na) = &cell.na {
                eprintln!("bench: {} on {}: {na}", path.short(), kind.label());
            }
            cells.push(cell);
        }
    }
    for rep in 0..plan.reps {
        for path in PathKind::ALL {
            // Rotate the datapath order each repetition so that drift on
            // this noisy machine does not always favour the same one.
            let mut these: Vec<&(usize, &Dp, Target)> = targets
                .iter()
                .filter(|(i, _, _)| cells[*i].path == path)
                .collect();
            if !these.is_empty() {
                let n = these.len();
                these.rotate_left(rep % n);
            }
            for (i, dp, t) in these {
                sys::check()?;
                let cell = &mut cells[*i];
                let ctx = dp.ctx();
                let drops_before = dp.agent.as_ref().and_then(|a| a.drops().ok());
                measure_rep(plan, ctx, t, &mut cell.m)?;
                if let (Some(before), Some(after)) =
                    (drops_before, dp.agent.as_ref().and_then(|a| a.drops().ok()))
                {
                    for (reason, n) in after {
                        let d = n.saturating_sub(before.get(&reason).copied().unwrap_or(0));
                        if d > 0 {
                            *cell.netd_drops.entry(reason).or_default() += d;
                        }
                    }
                }
                eprintln!(
                    "bench: [{}/{}] {:<16} {:<9} {:>7} Gbit/s {:>9} tx/s {:>8} conn/s p50 {} µs p99 {} µs",
                    rep + 1,
                    plan.reps,
                    path.short(),
                    dp.kind.label(),
                    last(&cell.m.gbps, 2),
                    last(&cell.m.tps, 0),
                    last(&cell.m.cps, 0),
                    last(&cell.m.p50_us, 1),
                    last(&cell.m.p99_us, 1),
                );
            }
        }
    }
    Ok(cells)
}

fn last(s: &Series, prec: usize) -> String {
    s.samples
        .last()
        .map(|v| measure::num(*v, prec))
        .unwrap_or_else(|| "—".into())
}

fn run_scale(
    plan: &Plan,
    dps: &mut [Dp],
    build_errors: &[(Kind, String)],
) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for kind in [Kind::Netd, Kind::Iptables] {
        let mut dp = dps.iter_mut().find(|d| d.kind == kind);
        let mut na: Option<String> = match &dp {
            Some(d) => d.publish_na.clone(),
            None => Some(
                build_errors
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_else(|| "not built".into()),
            ),
        };
        for (level, &ports) in plan.scale_levels.iter().enumerate() {
            sys::check()?;
            let mut row = ScaleRow {
                dp: kind,
                ports,
                na: na.clone(),
                fill_s: None,
                probe_port: None,
                tps: Series::default(),
                p99_us: Series::default(),
                cps: Series::default(),
                c2c_cps: Series::default(),
                publish_ms: Series::default(),
                plain_add_ms: Series::default(),
                errors: Vec::new(),
            };
            if let (None, Some(dp)) = (&na, dp.as_deref_mut()) {
                if let Err(e) = scale_level(plan, dp, level, ports, &mut row) {
                    sys::check()?;
                    let msg = format!("error: {}", short_err(&e));
                    eprintln!("bench: scale {} at {ports} ports: {msg}", kind.label());
                    row.na = Some(msg.clone());
                    na = Some(msg);
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn scale_level(
    plan: &Plan,
    dp: &mut Dp,
    level: usize,
    ports: usize,
    row: &mut ScaleRow,
) -> Result<()> {
    let t = Instant::now();
    dp.scale_to(ports)?;
    row.fill_s = Some(t.elapsed().as_secs_f64());
    sys::check()?;
    let probe = dp.publish_probe(level)?;
    row.probe_port = Some(probe.port);
    probe
        .publish_ms
        .iter()
        .for_each(|v| row.publish_ms.push(*v));
    probe
        .plain_add_ms
        .iter()
        .for_each(|v| row.plain_add_ms.push(*v));
    let t = dp.probe_target(probe.port);
    let c2c = dp.target(PathKind::C2c).map_err(anyhow::Error::msg)?;
    let ctx = dp.ctx().clone();
    warmup(&ctx, &t)?;
    for _ in 0..plan.scale_reps {
        sys::check()?;
        match measure::load(&ctx, &t, "rr", plan.load_secs) {
            Ok(r) => {
                row.tps.push(r.rate);
                row.p99_us.push(r.p99_us);
            }
            Err(e) => row.errors.push(format!("rr: {}", short_err(&e))),
        }
        match measure::load(&ctx, &t, "crr", plan.load_secs) {
            Ok(r) => row.cps.push(r.rate),
            Err(e) => row.errors.push(format!("crr: {}", short_err(&e))),
        }
        match measure::load(&ctx, &c2c, "crr", plan.load_secs) {
            Ok(r) => row.c2c_cps.push(r.rate),
            Err(e) => row.errors.push(format!("c2c crr: {}", short_err(&e))),
        }
    }
    eprintln!(
        "bench: scale {:<9} {:>6} ports: fill {:.1} s, publish one more {} ms, {} tx/s, {} conn/s, c2c {} conn/s",
        dp.kind.label(),
        ports,
        row.fill_s.unwrap_or(0.0),
        row.publish_ms.show(2),
        row.tps.show(0),
        row.cps.show(0),
        row.c2c_cps.show(0)
    );
    Ok(())
}

fn skipped_control(plan: &Plan) -> Control {
    Control {
        na: Some("not measured (--overlay-only)".into()),
        ..empty_control(plan)
    }
}

fn empty_control(plan: &Plan) -> Control {
    Control {
        na: None,
        latency_n: plan.cp_latency_n,
        total_n: plan.cp_total_n,
        add_ms: Vec::new(),
        total_s: None,
        cli_floor_ms: Series::default(),
        clients: CLIENTS,
        concurrent_n: plan.cp_total_n,
        concurrent_s: None,
        concurrent_add_ms: Series::default(),
        ls_while_adding_ms: Series::default(),
        load_before_concurrent: String::new(),
    }
}

fn run_control(plan: &Plan, ctx: &Ctx) -> Result<Control> {
    let mut c = empty_control(plan);
    if let Err(e) = control(plan, ctx, &mut c) {
        sys::check()?;
        eprintln!("bench: control plane: {e:#}");
        c.na = Some(format!("error: {}", short_err(&e)));
    }
    Ok(c)
}

/// Clients adding containers at once in the concurrent part.
const CLIENTS: usize = 8;

fn add_args<'a>(name: &'a str, path: &'a str) -> [&'a str; 7] {
    ["container", "add", name, "--netns", path, "--network", "cp"]
}

/// The control plane: `latency_n` adds one by one (the latency figures),
/// removed again; then `total_n` adds by [`CLIENTS`] clients at once while
/// another one times `network ls`.
fn control(plan: &Plan, ctx: &Ctx, c: &mut Control) -> Result<()> {
    let name = |r: &str| format!("{}{}-cp-{r}", sys::PREFIX, std::process::id());
    // Drop order: agent first, then the container netns, then the host.
    let host = Netns::create(&name("host"))?;
    let mut nss: Vec<Netns> = Vec::with_capacity(plan.cp_total_n);
    let agent = Agent::start(ctx, host.name(), "cp", &["--no-default-bridge"])?;
    agent.ok(&["network", "create", "cp", "--subnet", "10.200.0.0/16"])?;
    for _ in 0..20 {
        c.cli_floor_ms
            .push(agent.ok(&["network", "ls"])?.as_secs_f64() * 1000.0);
    }
    let n = plan.cp_total_n.max(plan.cp_latency_n);
    eprintln!("bench: control plane: creating {n} container netns");
    for i in 0..n {
        sys::check()?;
        nss.push(Netns::create(&name(&format!("k{i}")))?);
    }
    let paths: Vec<String> = nss
        .iter()
        .map(|ns| sys::netns_path(ns.name()).display().to_string())
        .collect();
    let mut total = Duration::ZERO;
    for (i, path) in paths.iter().take(plan.cp_latency_n).enumerate() {
        sys::check()?;
        let t = agent.ok(&add_args(&format!("s{i}"), path))?;
        total += t;
        c.add_ms.push(t.as_secs_f64() * 1000.0);
    }
    c.total_s = Some(total.as_secs_f64());
    eprintln!(
        "bench: control plane: {} sequential adds in {:.1} s; removing them",
        c.add_ms.len(),
        total.as_secs_f64()
    );
    for i in 0..c.add_ms.len() {
        agent.ok(&["container", "rm", &format!("s{i}")])?;
    }
    // A pause between the two parts, as between bursts (the removals'
    // deferred kernel work done before the concurrent adds).
    std::thread::sleep(Duration::from_secs(3));
    c.load_before_concurrent = loadavg();
    eprintln!(
        "bench: control plane: {} containers by {CLIENTS} clients at once",
        plan.cp_total_n
    );
    let done = std::sync::atomic::AtomicBool::new(false);
    let t0 = Instant::now();
    let (adds, ls) = std::thread::scope(|s| -> Result<(Vec<f64>, Vec<f64>)> {
        let reader = s.spawn(|| -> Result<Vec<f64>> {
            let mut v = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                v.push(agent.ok(&["network", "ls"])?.as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(v)
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let (agent, paths) = (&agent, &paths);
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut v = Vec::new();
                    for i in (k..plan.cp_total_n).step_by(CLIENTS) {
                        sys::check()?;
                        let t = agent.ok(&add_args(&format!("k{i}"), &paths[i]))?;
                        v.push(t.as_secs_f64() * 1000.0);
                    }
                    Ok(v)
                })
            })
            .collect();
        let mut adds = Vec::new();
        let mut first_err = None;
        for h in clients {
            match h.join().expect("a client thread panicked") {
                Ok(v) => adds.extend(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let ls = reader.join().expect("the reader thread panicked")?;
        match first_err {
            Some(e) => Err(e),
            None => Ok((adds, ls)),
        }
    })?;
    c.concurrent_s = Some(t0.elapsed().as_secs_f64());
    c.concurrent_add_ms = Series { samples: adds };
    c.ls_while_adding_ms = Series { samples: ls };
    eprintln!(
        "bench: control plane: {} containers in {:.1} s; tearing down",
        plan.cp_total_n,
        c.concurrent_s.unwrap_or_default()
    );
    drop(agent);
    drop(nss);
    drop(host);
    Ok(())
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn machine(ctx: &Ctx) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let first_line = |p: &str, a: &[&str]| {
        sys::run(p, a)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let netd = ctx.netd.display().to_string();
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory,
        kernel: first_line("uname", &["-r"]),
        os,
        iptables: first_line("iptables", &["--version"]),
        iperf3: first_line("iperf3", &["--version"]),
        netd: first_line(&netd, &["version"]),
        commit: first_line("git", &["describe", "--always", "--dirty"]),
    }
}
