//! netd as a host service: one agent per state dir, run dir and bpffs; the
//! config file (keys, precedence, errors, SIGHUP reload); systemd readiness
//! (`Type=notify`); log output fit for files and journals; `--socket-group`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netd_tests::cmd::{run_timeout, Out};
use netd_tests::traffic::{allow, deny, expect};
use netd_tests::Bed;

/// Runs `netd daemon ARGS` in the bed's host netns and waits for it to exit
/// (bounded): for agents that must refuse to start.
fn daemon_once(bed: &Bed, args: &[&str]) -> Out {
    let net = format!("--net={}", bed.host_ns_path().display());
    let bin = netd_tests::bed::netd_bin();
    let cgroup = bed.cgroup().display().to_string();
    let mut all = vec![net.as_str(), bin.to_str().unwrap(), "daemon"];
    all.extend_from_slice(&["--cgroup", &cgroup]);
    all.extend_from_slice(args);
    run_timeout("nsenter", &all, Duration::from_secs(20))
}

/// A fresh directory below the bed's, for a second agent's own paths.
fn subdir(bed: &Bed, name: &str) -> PathBuf {
    let d = bed.dir().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn is_mountpoint(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == dir)
}

fn socket_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// A second agent that shares one of the first one's state dir, run dir,
/// bpffs or Docker driver socket (the others its own) exits at once naming the first's pid and
/// what they share; the first keeps its socket, bridges, pins and traffic,
/// and the second leaves nothing in its own directories.
#[test]
fn a_second_agent_sharing_a_directory_is_refused() {
    let bed = Bed::new();
    bed.network("front", &["--subnet", "10.93.1.0/24"]);
    bed.network("back", &["--subnet", "10.93.2.0/24"]);
    let a = bed.container("a", &["--network", "front"]);
    let b = bed.container("b", &["--network", "front"]);
    let c = bed.container("c", &["--network", "back"]);
    let (a, b, c) = (bed.ep(&a, "front"), bed.ep(&b, "front"), bed.ep(&c, "back"));
    let nets = ["bridge", "front", "back"];
    let ctrs = ["a", "b", "c"];
    let before = bed.snapshot(&nets, &ctrs);
    let pins = bed.pinned_links();
    let sock = socket_inode(&bed.socket()).expect("the first agent's socket");
    let pid = bed.agent_pid().expect("the first agent runs");
    let (state, run, bpffs) = (bed.dir().join("state"), bed.dir().join("run"), bed.bpffs());

    let plugin = bed.plugin_dir().join("netd.sock");
    let plugin_sock = socket_inode(&plugin).expect("the first agent's Docker driver socket");
    let shares = ["--state-dir", "--run-dir", "--bpffs", "--docker-plugin"];
    for (i, shared) in shares.iter().enumerate() {
        let own = subdir(&bed, &format!("second{i}"));
        let own_state = subdir(&bed, &format!("second{i}/state"));
        let own_run = subdir(&bed, &format!("second{i}/run"));
        let own_bpffs = subdir(&bed, &format!("second{i}/bpffs"));
        // Never the host's /run/docker/plugins, even if it were not refused.
        let own_plugin = own.join("plugins/netd.sock");
        let pick = |flag: &str, first: &Path, mine: &Path| {
            if flag == *shared {
                first.display().to_string()
            } else {
                mine.display().to_string()
            }
        };
        let s = pick("--state-dir", &state, &own_state);
        let r = pick("--run-dir", &run, &own_run);
        let f = pick("--bpffs", &bpffs, &own_bpffs);
        let p = pick("--docker-plugin", &plugin, &own_plugin);
        let started = Instant::now();
        let out = daemon_once(
            &bed,
            &[
                "--state-dir",
                &s,
                "--run-dir",
                &r,
                "--bpffs",
                &f,
                "--docker-plugin",
                &p,
                "--log-level",
                "debug",
            ],
        );
        let took = started.elapsed();
        let mut errs = Vec::new();
        if out.success() || out.timed_out {
            errs.push(format!("the second agent was not refused:\n{out}"));
        }
        let shared_dir = match *shared {
            "--state-dir" => &s,
            "--run-dir" => &r,
            "--bpffs" => &f,
            _ => &p,
        };
        let err_line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("netd: error:"))
            .unwrap_or_default()
            .to_string();
        for want in [format!("pid {pid}"), format!("{shared} {shared_dir}")] {
            if !err_line.contains(&want) {
                errs.push(format!("the refusal does not say {want:?}:\n{out}"));
            }
        }
        for other in shares {
            if other != *shared && err_line.contains(&format!("{other} /")) {
                errs.push(format!(
                    "the refusal names {other}, which is not shared:\n{out}"
                ));
            }
        }
        if took > Duration::from_secs(10) {
            errs.push(format!("the refusal took {took:?}"));
        }
        // The second agent touched nothing of its own either.
        if own_run.join("netd.sock").exists() {
            errs.push("the second agent bound a socket in its own run dir".into());
        }
        if own_plugin.exists() {
            errs.push("the second agent bound a Docker driver socket of its own".into());
        }
        if is_mountpoint(&own_bpffs) {
            errs.push("the second agent mounted a bpffs on its own --bpffs".into());
        }
        if std::fs::read_dir(&own_state)
            .map(|d| d.count())
            .unwrap_or(0)
            != 0
        {
            errs.push("the second agent wrote into its own state dir".into());
        }
        // The first agent is untouched: same socket, answers, same state,
        // same pins, traffic as before.
        if socket_inode(&bed.socket()) != Some(sock) {
            errs.push("the first agent's socket was replaced".into());
        }
        if socket_inode(&plugin) != Some(plugin_sock) {
            errs.push("the first agent's Docker driver socket was replaced".into());
        }
        if let Err(e) = bed.check_unchanged(&before, &nets, &ctrs, "a refused second agent") {
            errs.push(e);
        }
        if bed.pinned_links() != pins {
            errs.push("the pinned links changed".into());
        }
        if bed.agent_pid() != Some(pid) {
            errs.push("the first agent is gone".into());
        }
        assert!(
            errs.is_empty(),
            "sharing {shared}:\n  - {}",
            errs.join("\n  - ")
        );
        expect(&[allow(&a, &b), allow(&b, &a), deny(&a, &c)]);
        drop(own);
    }
    // And it still takes changes.
    let d = bed.container("d", &["--network", "front"]);
    expect(&[allow(&bed.ep(&d, "front"), &a)]);
}

fn status(bed: &Bed) -> serde_json::Value {
    bed.json(&["status", "--format", "json"])
}

fn signal(bed: &Bed, sig: nix::sys::signal::Signal) {
    let pid = bed.agent_pid().expect("agent running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

fn log(bed: &Bed) -> String {
    std::fs::read_to_string(bed.log_path()).unwrap_or_default()
}

/// Asserts that one line of the agent's log holds all of `words`.
fn assert_logged(bed: &Bed, words: &[&str], what: &str) {
    let text = log(bed);
    assert!(
        text.lines().any(|l| words.iter().all(|w| l.contains(w))),
        "{what}:\n{text}"
    );
}

/// Waits (bounded) until `cond` holds.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    netd_tests::wait::wait_until(what, Duration::from_secs(10), cond);
}

/// Keys of the file apply; a flag on the command line beats its key.
#[test]
fn config_file_keys_apply_and_flags_win() {
    let bed = Bed::with_config(
        "# netd test config\n\
         snat-ports = \"62000-62100\"\n\
         ct-timeout = [\"udp=11\", \"icmp=12\"]\n\
         dns-upstream = [\"192.0.2.53\"]\n\
         no-default-bridge = true\n",
        &["--snat-ports", "63000-63100"],
    );
    bed.start_agent();
    let st = status(&bed);
    assert_eq!(st["snat_ports"], "63000-63100", "the flag wins: {st}");
    assert_eq!(st["conntrack"]["timeouts"]["udp"], 11, "{st}");
    assert_eq!(st["conntrack"]["timeouts"]["icmp"], 12, "{st}");
    assert_eq!(
        st["conntrack"]["timeouts"]["tcp"], 7440,
        "default kept: {st}"
    );
    assert_eq!(st["dns"]["upstreams"][0], "192.0.2.53:53", "{st}");
    let nets = bed.json(&["network", "ls", "--format", "json"]);
    assert_eq!(
        nets,
        serde_json::json!([]),
        "no-default-bridge = true: {nets}"
    );
    assert_logged(
        &bed,
        &["overridden by the command line", "snat-ports"],
        "the agent should say which key the command line overrides",
    );
}

/// An unknown key or a bad value stops the agent before it does anything,
/// with one line naming the file, the line and the key.
#[test]
fn config_file_errors_name_the_key_and_line() {
    let bed = Bed::without_agent(&[]);
    let cases = [
        (
            "ct-size = 1024\n\nstate_dir = \"/x\"\n",
            " line 3: unknown key `state_dir`",
        ),
        (
            "ct-size = \"many\"\n",
            " line 1: `ct-size`: invalid value 'many'",
        ),
        (
            "\nct-timeout = [\"tcp=1\", \"nope=3\"]\n",
            " line 2: `ct-timeout`:",
        ),
        (
            "no-default-bridge = 1\n",
            " line 1: `no-default-bridge`: expected true or false",
        ),
        ("snat-ports = \"9-1\"\n", " line 1: `snat-ports`:"),
        ("uplink = [\"eth0\"\n", ": line 1:"),
        (
            "config = \"/etc/other.toml\"\n",
            " line 1: unknown key `config`",
        ),
    ];
    let (state, run, bpffs) = (
        subdir(&bed, "cfg/state"),
        subdir(&bed, "cfg/run"),
        subdir(&bed, "cfg/bpffs"),
    );
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = bed.dir().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        let out = daemon_once(
            &bed,
            &[
                "--config",
                &file,
                "--state-dir",
                state.to_str().unwrap(),
                "--run-dir",
                run.to_str().unwrap(),
                "--bpffs",
                bpffs.to_str().unwrap(),
            ],
        );
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            !out.success() && !out.timed_out,
            "{text:?} was accepted:\n{out}"
        );
        assert_eq!(lines.len(), 1, "{text:?}: one line expected:\n{out}");
        let want = format!("netd: error: {file}{want}");
        assert!(
            lines[0].starts_with(&want),
            "{text:?}: expected {want:?}:\n{out}"
        );
        assert!(!is_mountpoint(&bpffs), "{text:?}: a bpffs was mounted");
        assert!(
            !run.join("netd.sock").exists(),
            "{text:?}: a socket was bound"
        );
        assert_eq!(
            std::fs::read_dir(&state).unwrap().count(),
            0,
            "{text:?}: state written"
        );
    }
    // A --config that does not exist is an error too (only the default
    // file may be missing).
    let out = daemon_once(&bed, &["--config", "/nonexistent/netd.toml"]);
    assert!(
        !out.success()
            && out
                .stderr
                .contains("cannot read config file /nonexistent/netd.toml"),
        "{out}"
    );
}

/// SIGHUP reads the file again: DNS upstreams, conntrack timeouts and the
/// log level change at once; other keys are named as needing a restart; a
/// file that no longer parses changes nothing.
#[test]
fn sighup_reloads_what_can_change_live() {
    let bed = Bed::with_config(
        "dns-upstream = [\"192.0.2.1\"]\nct-timeout = [\"udp=40\"]\nlog-level = \"info\"\nct-size = 8192\n",
        &[],
    );
    bed.start_agent();
    let st = status(&bed);
    assert_eq!(st["dns"]["upstreams"][0], "192.0.2.1:53", "{st}");
    assert_eq!(st["conntrack"]["timeouts"]["udp"], 40, "{st}");
    let pid = bed.agent_pid().expect("agent");

    // Info level: a new network's DNS listener logs at debug, not shown.
    bed.network("before", &[]);
    assert!(
        !log(&bed).contains("DEBUG"),
        "debug lines at info:\n{}",
        log(&bed)
    );
    std::fs::write(
        bed.config_path(),
        "dns-upstream = [\"192.0.2.2\", \"192.0.2.3:5353\"]\nct-timeout = [\"udp=41\"]\nlog-level = \"debug\"\nct-size = 16384\n",
    )
    .unwrap();
    signal(&bed, nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload", || {
        status(&bed)["conntrack"]["timeouts"]["udp"] == 41
    });
    let st = status(&bed);
    assert_eq!(
        st["dns"]["upstreams"],
        serde_json::json!(["192.0.2.2:53", "192.0.2.3:5353"]),
        "{st}"
    );
    let restart = ["ct-size", "next restart"];
    assert_logged(
        &bed,
        &restart,
        "the reload should say ct-size needs a restart",
    );
    let applied = ["dns-upstream", "applied"];
    assert_logged(
        &bed,
        &applied,
        "the reload should say dns-upstream was applied",
    );

    bed.network("after", &[]);
    wait_for("debug lines after log-level = debug", || {
        log(&bed).contains("DEBUG")
    });

    // A file that no longer parses changes nothing.
    std::fs::write(bed.config_path(), "ct-timeout = [\"udp=nope\"]\n").unwrap();
    signal(&bed, nix::sys::signal::Signal::SIGHUP);
    wait_for("the failed reload to be logged", || {
        log(&bed).contains("config reload failed")
    });
    assert_eq!(status(&bed)["conntrack"]["timeouts"]["udp"], 41);
    assert_eq!(
        bed.agent_pid(),
        Some(pid),
        "the agent survives a bad reload"
    );
}

/// `Type=notify`: the agent sends READY=1 to $NOTIFY_SOCKET once its API
/// answers (a CLI call made the moment it arrives succeeds), and
/// STOPPING=1 when it stops.
#[test]
fn ready_is_notified_once_the_api_answers() {
    let bed = Bed::without_agent(&[]);
    let path = bed.dir().join("notify.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let sock = bed.socket();
    let bin = netd_tests::bed::netd_bin();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match rx.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => return (seen, Err(format!("no READY=1 within 20 s: {e}"))),
            };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(msg.clone());
            if msg.lines().any(|l| l == "READY=1") {
                // Right now, not after a retry.
                let out = run_timeout(
                    bin.to_str().unwrap(),
                    &["-H", sock.to_str().unwrap(), "status"],
                    Duration::from_secs(10),
                );
                return (
                    seen,
                    if out.success() {
                        Ok(rx)
                    } else {
                        Err(format!("{out}"))
                    },
                );
            }
        }
    });
    bed.start_agent_env(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let (seen, res) = watcher.join().unwrap();
    let rx = res.unwrap_or_else(|e| panic!("READY=1 before the API answered: {e}; got {seen:?}"));
    assert_eq!(seen.len(), 1, "one message before READY: {seen:?}");
    let st = bed.stop_agent();
    assert!(st.success(), "{st}");
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// Log lines carry no ANSI colour when stderr is a file (the bed's log
/// file), and `--log-format json` gives one JSON object per line.
#[test]
fn logs_are_plain_text_or_json_lines() {
    let bed = Bed::new();
    bed.network("logs", &[]);
    let text = log(&bed);
    assert!(text.contains("netd agent ready"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{text:?}"
    );

    let bed = Bed::with_daemon_args(&["--log-format", "json"]);
    bed.network("logs", &[]);
    let text = log(&bed);
    let mut ready = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{text}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        ready |= v["fields"]["message"] == "netd agent ready";
    }
    assert!(ready, "no ready line in:\n{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

/// Runs `netd -H SOCK status` as uid 65534 with the given supplementary
/// groups (setpriv: no user or group is added to the host).
fn status_as_nobody(bed: &Bed, groups: &str) -> Out {
    let sock = bed.socket();
    let bin = netd_tests::bed::netd_bin();
    let mut args = vec!["--reuid", "65534", "--regid", "65534"];
    if groups.is_empty() {
        args.push("--clear-groups");
    } else {
        args.extend(["--groups", groups]);
    }
    args.extend([
        bin.to_str().unwrap(),
        "-H",
        sock.to_str().unwrap(),
        "status",
    ]);
    run_timeout("setpriv", &args, Duration::from_secs(20))
}

/// `--socket-group GID`: the socket is 0660 for that group and a member
/// uses the CLI; a non-member is refused. Without it, only root.
#[test]
fn socket_group_lets_members_use_the_cli() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let gid = 40000 + (rand::random::<u32>() % 20000);
    let g = gid.to_string();
    // The bed's directory must be traversable for uid 65534.
    let bed = Bed::without_agent(&["--socket-group", &g]);
    std::fs::set_permissions(bed.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    bed.start_agent();
    let meta = std::fs::metadata(bed.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), gid, "socket group");
    let member = status_as_nobody(&bed, &g);
    assert!(
        member.success(),
        "a member of the group is refused:\n{member}"
    );
    assert!(member.stdout.contains("containers"), "{member}");
    let other = status_as_nobody(&bed, "");
    assert!(!other.success(), "a non-member got in:\n{other}");
    assert!(other.stderr.contains("netd: error:"), "{other}");

    // Default: 0600, root only.
    let bed = Bed::without_agent(&[]);
    std::fs::set_permissions(bed.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    bed.start_agent();
    let meta = std::fs::metadata(bed.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "default socket mode");
    let out = status_as_nobody(&bed, &g);
    assert!(
        !out.success(),
        "without --socket-group a non-root user got in:\n{out}"
    );
}

/// An unknown group name is refused before anything happens.
#[test]
fn an_unknown_socket_group_is_refused() {
    let bed = Bed::without_agent(&[]);
    let run = subdir(&bed, "g/run");
    let out = daemon_once(
        &bed,
        &[
            "--socket-group",
            "no-such-group-netd",
            "--state-dir",
            subdir(&bed, "g/state").to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--bpffs",
            subdir(&bed, "g/bpffs").to_str().unwrap(),
        ],
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("--socket-group no-such-group-netd: no such group"),
        "{out}"
    );
    assert!(!run.join("netd.sock").exists());
}

/// The capabilities of the systemd unit's CapabilityBoundingSet, as
/// setpriv's `-all,+net_admin,...`.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../netd/dist/netd.service"),
    )
    .unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    let mut spec = "-all".to_string();
    for c in caps.split_whitespace() {
        spec.push_str(",+");
        spec.push_str(&c.trim_start_matches("CAP_").to_lowercase());
    }
    spec
}

/// The agent works with the unit's capabilities and no others (root with a
/// bounding set of exactly those, as systemd runs it): every kind of kernel
/// work — bpffs mount, program loads and TCX/XDP/cgroup attach, bridges and
/// veths in container netns (one handed as /proc/PID/ns/net of a process
/// of another user), DNS on port 53, a published port below 1024, the
/// socket given to a group — then traffic through all of it.
#[test]
fn the_units_capabilities_are_enough() {
    let caps = std::env::var("NETD_TEST_CAPS").unwrap_or_else(|_| unit_capabilities());
    let wrapper = [
        "setpriv",
        "--inh-caps=-all",
        &format!("--bounding-set={caps}"),
        "--",
    ];
    let bed = Bed::with_wrapper(&wrapper, &["--socket-group", "54321"]);
    let world = bed.make_world();
    bed.start_agent();
    let pid = bed.agent_pid().expect("agent");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(eff, "000001ffffffffff", "the agent kept every capability");

    bed.network("capnet", &["--subnet", "10.94.0.0/24"]);
    let a = bed.container("capa", &["--network", "capnet", "-p", "80:8080"]);
    // A netns held by a process of another user, handed by /proc path.
    let ns = bed.new_netns("nobody");
    let mut holder = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns, "setpriv", "--reuid", "65534", "--regid", "65534",
        ])
        .args(["--clear-groups", "sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // `ip netns exec` and setpriv exec: the child is the sleep itself.
    let proc_ns = format!("/proc/{}/ns/net", holder.id());
    let added = bed.netd(&[
        "container",
        "add",
        "capb",
        "--netns",
        &proc_ns,
        "--network",
        "capnet",
    ]);
    assert!(
        added.success(),
        "container add by /proc/PID/ns/net of another user:\n{added}\n{}",
        bed.log_tail(20)
    );
    let a = bed.ep(&a, "capnet");
    let gw = bed.gateway("capnet");
    let dig = run_timeout(
        "ip",
        &[
            "netns",
            "exec",
            &a.ns,
            "dig",
            &format!("@{gw}"),
            "capa",
            "+time=1",
            "+tries=2",
            "+short",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(
        dig.stdout.trim(),
        a.ip.to_string(),
        "DNS on the gateway:\n{dig}"
    );
    // Traffic: a -> b over the TCX programs, and the world -> host:80
    // published to a:8080 (uplink XDP and TCX).
    let b_ip = bed.ip(&bed_ctr(&bed, "capb"), "capnet");
    netd_tests::icmp(&a.ns, b_ip).unwrap_or_else(|e| panic!("a -> b: {e:#}"));
    let server = netd_tests::netns::spawn_in(&a.ns, || {
        let l = std::net::TcpListener::bind(("0.0.0.0", 8080))?;
        let (mut s, peer) = l.accept()?;
        std::io::Write::write_all(&mut s, b"hello")?;
        Ok(peer)
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = netd_tests::netns::spawn_in(&world, || {
        let s = std::net::TcpStream::connect_timeout(
            &"203.0.113.2:80".parse().unwrap(),
            Duration::from_secs(3),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut &s, &mut buf)?;
        Ok(buf)
    });
    let got = netd_tests::netns::join(client).unwrap_or_else(|e| panic!("world -> :80: {e:#}"));
    assert_eq!(got, "hello");
    let peer = netd_tests::netns::join(server).unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "203.0.113.1",
        "a sees the world's address"
    );
    let st = status(&bed);
    assert!(st["uplinks"]["up0"].is_object(), "uplink up0: {st}");
    assert!(bed.stop_agent().success());
    let _ = holder.kill();
    let _ = holder.wait();
}

/// The [`netd_tests::Ctr`] of container `name` (added by path, not by the
/// harness).
fn bed_ctr(bed: &Bed, name: &str) -> netd_tests::Ctr {
    let info = bed.ctr_info(name);
    netd_tests::Ctr {
        name: name.to_string(),
        id: info["Id"].as_str().unwrap_or_default().to_string(),
        ns: String::new(),
        netns_path: String::new(),
    }
}

/// A Linux bridge holds at most 1,023 ports: the container that would be
/// the 1,024th on a network gets a sentence saying so and what to do (not
/// "Exchange full (os error 54)"), and nothing is left half-made. The
/// bridge is filled with 1,023 plain veths (quicker than 1,023 containers);
/// with one of them gone the same add succeeds.
#[test]
fn a_full_bridge_says_what_to_do() {
    let bed = Bed::new();
    bed.network("big", &["--subnet", "10.95.0.0/24"]);
    let bridge = bed.net_info("big")["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("bridge name")
        .to_string();
    let mut batch = String::new();
    for i in 0..1023 {
        batch.push_str(&format!("link add f{i} type veth peer name g{i}\n"));
        batch.push_str(&format!("link set f{i} master {bridge}\n"));
    }
    let file = bed.dir().join("fill.batch");
    std::fs::write(&file, batch).unwrap();
    let out = run_timeout(
        "ip",
        &["-n", bed.host_ns(), "-batch", file.to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(out.success(), "filling {bridge}:\n{out}");
    let ns = bed.new_netns("full");
    let path = format!("/run/netns/{ns}");
    let before = bed.snapshot(&["big"], &[]);
    let add = [
        "container",
        "add",
        "late",
        "--netns",
        &path,
        "--network",
        "big",
    ];
    let msg = bed.fail(&add);
    assert!(
        msg.contains("network big is full")
            && msg.contains("1023 ports, the most a Linux bridge holds")
            && msg.contains("another network"),
        "{msg}"
    );
    assert!(!msg.contains("os error"), "{msg}");
    bed.assert_unchanged(&before, &["big"], &[], "a refused 1,024th port");
    assert!(
        Bed::links(&ns).iter().all(|l| l == "lo"),
        "the container netns kept {:?}",
        Bed::links(&ns)
    );
    netd_tests::cmd::ip_ns(bed.host_ns(), &["link", "del", "f0"]).unwrap();
    bed.ok(&add);
}

/// Under systemd (stderr is the journal stream named by JOURNAL_STREAM),
/// lines carry no timestamp of their own: journald stamps them. A
/// JOURNAL_STREAM that is not our stderr changes nothing.
#[test]
fn no_own_timestamps_on_the_journal() {
    use std::os::unix::fs::MetadataExt;
    for (ours, stamped) in [(true, false), (false, true)] {
        let bed = Bed::without_agent(&[]);
        std::fs::write(bed.log_path(), "").unwrap();
        let m = std::fs::metadata(bed.log_path()).unwrap();
        let stream = if ours {
            format!("{}:{}", m.dev(), m.ino())
        } else {
            format!("{}:{}", m.dev(), m.ino() + 1)
        };
        bed.start_agent_env(&[("JOURNAL_STREAM", &stream)]);
        let text = log(&bed);
        let ready = text
            .lines()
            .find(|l| l.contains("netd agent ready"))
            .unwrap_or_else(|| panic!("no ready line:\n{text}"));
        let starts_with_time = ready.starts_with("20") && ready.as_bytes().get(4) == Some(&b'-');
        assert_eq!(
            starts_with_time, stamped,
            "JOURNAL_STREAM ours={ours}: {ready:?}"
        );
        if !stamped {
            assert!(ready.trim_start().starts_with("INFO"), "{ready:?}");
        }
    }
}

/// A UDP "DNS server" on 127.0.0.1:PORT in the bed's host netns that only
/// counts what it receives.
struct CountingUpstream {
    port: u16,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl CountingUpstream {
    fn start(bed: &Bed) -> CountingUpstream {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let (seen, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, st) = (seen.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = netd_tests::netns::spawn_in(bed.host_ns(), move || {
            let sock = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = tx.send(sock.local_addr()?.port());
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                if sock.recv_from(&mut buf).is_ok() {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        });
        let port = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("upstream started");
        CountingUpstream {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = netd_tests::netns::join(t);
        }
    }
}

/// SIGHUP in behaviour: after `dns-upstream` changes in the file and the
/// agent gets SIGHUP, names the embedded DNS does not know are forwarded to
/// the new upstream and no longer to the old one.
#[test]
fn sighup_moves_dns_forwarding_to_the_new_upstream() {
    // The upstreams live in the bed's host netns, so the bed comes first
    // and its config file is written once their ports are known.
    let bed = Bed::with_config("", &[]);
    let (old_up, new_up) = (CountingUpstream::start(&bed), CountingUpstream::start(&bed));
    let write = |port: u16| {
        std::fs::write(
            bed.config_path(),
            format!("dns-upstream = [\"127.0.0.1:{port}\"]\n"),
        )
        .unwrap()
    };
    write(old_up.port);
    bed.start_agent();
    bed.network("fwd", &["--subnet", "10.96.0.0/24"]);
    let c = bed.container("c", &["--network", "fwd"]);
    let gw = bed.gateway("fwd");
    let ask = |name: &str| {
        run_timeout(
            "ip",
            &[
                "netns",
                "exec",
                &c.ns,
                "dig",
                &format!("@{gw}"),
                name,
                "+time=3",
                "+tries=1",
            ],
            Duration::from_secs(10),
        )
    };
    ask("one.example.test");
    wait_for("the old upstream to be asked", || old_up.seen() > 0);
    assert_eq!(
        new_up.seen(),
        0,
        "the new upstream was asked before the reload"
    );

    write(new_up.port);
    signal(&bed, nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload", || {
        status(&bed)["dns"]["upstreams"][0] == format!("127.0.0.1:{}", new_up.port)
    });
    let old_before = old_up.seen();
    ask("two.example.test");
    wait_for("the new upstream to be asked", || new_up.seen() > 0);
    assert_eq!(
        old_up.seen(),
        old_before,
        "the old upstream is still asked after the reload"
    );
}
