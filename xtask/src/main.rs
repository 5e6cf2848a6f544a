//! Build chain for netd: `cargo xtask
//! <setup|build|run|test|bench|install|uninstall|deb>`.
//!
//! Every external command is printed (to stderr, prefixed with `$`) before it
//! runs. `~/.cargo/bin` (or `$CARGO_HOME/bin`) is put on `PATH` for every
//! child, because netd's build script needs `bpf-linker` from there.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    io::Read as _,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use clap::{Parser, Subcommand};

mod bench;
mod deb;
mod hostile;
mod install;

/// Debian packages the build and the tests use.
const APT_PACKAGES: &[&str] = &[
    // protoc: etcd-client's build script compiles etcd's protobuf files.
    "protobuf-compiler",
    // The cluster store of the overlay tests (tests/tests/overlay_cluster.rs).
    "etcd-server",
    "iproute2",
    "iputils-ping",
    "socat",
    "ethtool",
    "ncat",
    "tcpdump",
    "bpftool",
    "iperf3",
    "dnsutils",
    "util-linux",
    "procps",
    // Runtimes that drive netd-cni in the tests (tests/tests/cni_runtimes.rs).
    "podman",
    "containerd",
    "runc",
    "containernetworking-plugins",
    // A real dockerd 20.10 for the Docker driver tests (tests/tests/docker.rs).
    "docker.io",
    "busybox-static",
    "iptables",
    "nftables",
    "kmod",
];

/// The SPEC section-4 packet test binaries that also run on hostile hosts
/// (`NETD_TEST_FIREWALL`, see tests/src/firewall.rs).
const HOSTILE_TESTS: &[&str] = &[
    "reachability",
    "masquerade",
    "publish",
    "dns",
    "ipv6_reachability",
    "ipv6_leak",
    "ipv6",
    "ipv6_only",
    "dual_stack",
    "publish6",
    "masquerade6",
    "fragments",
];
/// What the workspace pass tests (the eBPF crate's host tests run apart).
const WORKSPACE_TEST_SELECTION: &[&str] = &["test", "--workspace", "--exclude", "netd-ebpf"];
/// The hostile host variants they run on.
const FIREWALLS: &[&str] = &["iptables", "nftables"];

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netd build chain")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing needs (rust-src, bpf-linker, Debian
    /// packages), each only when missing.
    Setup,
    /// Setup, then build netd (and its eBPF object).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `netd daemon ARGS` (needs root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for `netd daemon`, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build, then run every test (netns tests need root).
    Test {
        /// Skip the second and third runs of the SPEC section-4 packet tests
        /// (reachability, masquerade, publish, DNS and their IPv6 twins) on
        /// each hostile host (iptables, nftables: FORWARD and INPUT policy
        /// DROP, br_netfilter on), which `test` otherwise does after the
        /// workspace tests.
        #[arg(long)]
        no_hostile: bool,
        /// Run only those hostile-host runs (for FIREWALL, or both).
        #[arg(long, value_name = "FIREWALL", num_args = 0..=1, default_missing_value = "all")]
        only_hostile: Option<String>,
        /// Arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Release build, then install netd as a host service: PREFIX/bin/netd,
    /// /opt/cni/bin/netd-cni (when that directory exists), the systemd
    /// unit, a commented /etc/netd/netd.toml (kept if present) and a
    /// manifest for uninstall. Run again to upgrade.
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Staging root: every path goes below it (nothing else is done).
        #[arg(long, value_name = "DIR")]
        destdir: Option<PathBuf>,
    },
    /// Remove exactly what `install` wrote (its manifest); an edited
    /// /etc/netd/netd.toml stays.
    Uninstall {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        #[arg(long, value_name = "DIR")]
        destdir: Option<PathBuf>,
    },
    /// Release build, then the Debian package (cargo-deb) under
    /// target/debian/.
    Deb,
    /// Benchmarks: netd vs a Docker-equivalent iptables datapath vs bare
    /// veths (root); report under bench/results/.
    Bench {
        /// Fewer repetitions and smaller counts (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Only the cross-host comparison (netd overlay, kernel VXLAN +
        /// bridge, underlay).
        #[arg(long)]
        overlay_only: bool,
        /// Only the control-plane part: `container add` latency, containers
        /// brought up by 8 clients at once, `network ls` meanwhile.
        #[arg(long)]
        control_only: bool,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    add_cargo_bin_to_path()?;
    let root = workspace_root();
    match cli.cmd {
        Cmd::Setup => setup(&root)?,
        Cmd::Build { release } => build(&root, release)?,
        Cmd::Run { release, args } => run(&root, release, &args)?,
        Cmd::Test {
            no_hostile,
            only_hostile,
            args,
        } => test(&root, !no_hostile, only_hostile.as_deref(), &args)?,
        Cmd::Bench {
            quick,
            overlay_only,
            control_only,
        } => bench::bench(&root, quick, overlay_only, control_only)?,
        Cmd::Install { prefix, destdir } => install_cmd(&root, prefix, destdir)?,
        Cmd::Uninstall { prefix, destdir } => {
            let layout = install::Layout {
                destdir: destdir.unwrap_or_else(|| PathBuf::from("/")),
                prefix,
            };
            install::uninstall(&layout)?;
        }
        Cmd::Deb => {
            let out = deb::build(&root)?;
            println!("{}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- commands

fn setup(root: &Path) -> Result<()> {
    setup_rust_src().context("setting up rust-src for the nightly toolchain")?;
    setup_bpf_linker().context("setting up bpf-linker")?;
    setup_apt_packages(root).context("setting up Debian packages")?;
    deb::setup_cargo_deb().context("setting up cargo-deb")?;
    Ok(())
}

fn build(root: &Path, release: bool) -> Result<()> {
    setup(root)?;
    let mut cmd = cargo(root);
    cmd.args(["build", "--package", "netd"]);
    if release {
        cmd.arg("--release");
    }
    run_ok(&mut cmd).context("building netd")
}

fn run(root: &Path, release: bool, args: &[OsString]) -> Result<()> {
    ensure!(
        effective_uid()? == 0,
        "netd daemon must run as root (it loads eBPF programs and creates interfaces); \
         run `cargo xtask run` as root"
    );
    build(root, release)?;
    let bin = target_dir(root).join(profile(release)).join("netd");
    let mut cmd = Command::new(&bin);
    cmd.arg("daemon").args(args);
    print_cmd(&cmd);
    // `exec` only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("executing {}", bin.display()))
}

fn install_cmd(root: &Path, prefix: PathBuf, destdir: Option<PathBuf>) -> Result<()> {
    let real = destdir.is_none();
    if real {
        ensure!(
            effective_uid()? == 0,
            "installing into / needs root; run `cargo xtask install` as root \
             (or give --destdir DIR to stage the files)"
        );
    }
    build(root, true)?;
    let release = target_dir(root).join("release");
    let cni = release.join("netd-cni");
    let bins = install::Binaries {
        netd: release.join("netd"),
        netd_cni: cni.is_file().then_some(cni),
    };
    let layout = install::Layout {
        destdir: destdir.unwrap_or_else(|| PathBuf::from("/")),
        prefix,
    };
    install::install(&layout, &bins)?;
    if real && Path::new("/run/systemd/system").is_dir() {
        run_ok(Command::new("systemctl").arg("daemon-reload"))?;
        eprintln!("xtask: start the agent with `systemctl enable --now netd`");
    } else if real {
        eprintln!(
            "xtask: systemd is not running here; start the agent with `netd daemon` \
             (as root; it reads /etc/netd/netd.toml)"
        );
    }
    Ok(())
}

fn test(root: &Path, hostile: bool, only_hostile: Option<&str>, args: &[OsString]) -> Result<()> {
    let firewalls: Vec<&str> = match only_hostile {
        None if hostile => FIREWALLS.to_vec(),
        None => Vec::new(),
        Some("all") => FIREWALLS.to_vec(),
        Some(f) if FIREWALLS.contains(&f) => vec![f],
        Some(f) => bail!("unknown firewall {f:?}: use {}", FIREWALLS.join(" or ")),
    };
    build(root, false)?;
    let netd_bin = target_dir(root).join("debug").join("netd");
    ensure!(
        netd_bin.is_file(),
        "{} is missing after the build",
        netd_bin.display()
    );

    let mut failed = Vec::new();
    if only_hostile.is_none() {
        workspace_tests(root, &netd_bin, args, &mut failed);
    }
    match hostile::run(root, &netd_bin, &firewalls, HOSTILE_TESTS, args) {
        Ok(f) => failed.extend(f),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            failed.push("hostile hosts".to_string());
        }
    }

    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Unit, BPF test-run and netns tests of the whole workspace, on the
/// permissive host.
fn workspace_tests(root: &Path, netd_bin: &Path, args: &[OsString], failed: &mut Vec<String>) {
    let mut cmd = cargo(root);
    cmd.args(WORKSPACE_TEST_SELECTION)
        .arg("--no-fail-fast")
        .env("NETD_BIN", netd_bin)
        .env_remove("NETD_TEST_FIREWALL");
    add_test_args(&mut cmd, args);
    if let Err(e) = run_ok(&mut cmd) {
        eprintln!("xtask: {e:#}");
        failed.push("workspace tests".to_string());
    }

    // The eBPF crate compiles for the host with an empty main, so the unit
    // tests of its pure modules (policy) run here.
    let mut cmd = cargo(root);
    cmd.args(["test", "--package", "netd-ebpf"]);
    add_test_args(&mut cmd, args);
    if let Err(e) = run_ok(&mut cmd) {
        eprintln!("xtask: {e:#}");
        failed.push("netd-ebpf host unit tests".to_string());
    }
}

fn add_test_args(cmd: &mut Command, args: &[OsString]) {
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
}

// ---------------------------------------------------------------- setup steps

fn setup_rust_src() -> Result<()> {
    let installed =
        output_of(Command::new("rustup").args(["+nightly", "component", "list", "--installed"]))?;
    let has_src = installed
        .lines()
        .any(|l| l.trim() == "rust-src" || l.trim().starts_with("rust-src-"));
    if has_src {
        report("rust-src (nightly)", false);
        return Ok(());
    }
    run_ok(Command::new("rustup").args(["+nightly", "component", "add", "rust-src"]))?;
    report("rust-src (nightly)", true);
    Ok(())
}

fn setup_bpf_linker() -> Result<()> {
    let works = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        report("bpf-linker", false);
        return Ok(());
    }

    // bpf-linker links LLVM dynamically; build it against the nightly
    // toolchain's own libLLVM (the one rustc emits bitcode for), exposed
    // through a prefix whose lib/ holds the names the linker looks for.
    let vv = output_of(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no \"LLVM version: N.x.y\" line in `rustc +nightly -vV`:\n{vv}"))?;

    let sysroot = output_of(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = find_libllvm(&libdir)?;
    let versioned = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", libllvm.display()))?
        .to_owned();

    // The built binary keeps this directory as its rpath, so it must outlive
    // `cargo clean`: keep it in CARGO_HOME, not in target/.
    let prefix = cargo_home()?.join("netd-bpf-linker-llvm");
    let prefix_lib = prefix.join("lib");
    if prefix_lib.exists() {
        fs::remove_dir_all(&prefix_lib)
            .with_context(|| format!("removing stale {}", prefix_lib.display()))?;
    }
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    for name in [OsStr::new("libLLVM.so"), versioned.as_os_str()] {
        let link = prefix_lib.join(name);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("symlinking {} -> {}", link.display(), libllvm.display()))?;
    }
    eprintln!(
        "xtask: LLVM prefix {} -> {} (LLVM {llvm_major})",
        prefix.display(),
        libllvm.display()
    );

    let features = format!("llvm-{llvm_major}");
    run_ok(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "--locked", "--force", "bpf-linker"])
            .args(["--no-default-features", "--features", &features]),
    )?;

    let status = Command::new("bpf-linker")
        .arg("--version")
        .status()
        .context("running the freshly installed bpf-linker")?;
    ensure!(
        status.success(),
        "the freshly installed `bpf-linker --version` failed ({status})"
    );
    report("bpf-linker", true);
    Ok(())
}

/// The real shared library `libLLVM.so.<version>` in the toolchain's lib dir
/// (not the `libLLVM-N-rust-*.so` linker script next to it).
fn find_libllvm(libdir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(libdir).with_context(|| format!("listing {}", libdir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", libdir.display()))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("libLLVM.so.") {
            continue;
        }
        let path = entry.path();
        if !path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let mut magic = [0u8; 4];
        let is_elf = fs::File::open(&path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == *b"\x7fELF";
        if is_elf {
            found.push(path);
        }
    }
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no libLLVM.so.<version> shared library in {}",
            libdir.display()
        ),
        many => bail!(
            "several libLLVM.so.<version> libraries in {}: {many:?}",
            libdir.display()
        ),
    }
}

fn setup_apt_packages(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for &pkg in APT_PACKAGES {
        if dpkg_installed(pkg)? {
            report(pkg, false);
        } else {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    ensure!(
        effective_uid()? == 0,
        "Debian packages {} are missing and installing them needs root; \
         run `cargo xtask setup` as root",
        missing.join(" ")
    );
    apt_install(root, &missing)
}

/// `apt-get update` and `install -y` of `missing`, then checks each one.
pub(crate) fn apt_install(root: &Path, missing: &[&str]) -> Result<()> {
    run_ok(
        Command::new("apt-get")
            .current_dir(root)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("update"),
    )?;
    run_ok(
        Command::new("apt-get")
            .current_dir(root)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(missing),
    )?;
    for &pkg in missing {
        ensure!(
            dpkg_installed(pkg)?,
            "{pkg} is still not installed after apt-get install"
        );
        report(pkg, true);
    }
    Ok(())
}

fn dpkg_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    // Unknown packages make dpkg-query fail; that just means "missing".
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed"))
}

fn report(item: &str, installed: bool) {
    println!("{item}: {}", if installed { "installed" } else { "ok" });
}

// ---------------------------------------------------------------- helpers

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn profile(release: bool) -> &'static str {
    if release {
        "release"
    } else {
        "debug"
    }
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// Put `$CARGO_HOME/bin` first on PATH (if it is not there yet) so that
/// this process and every child finds `bpf-linker` and friends.
fn add_cargo_bin_to_path() -> Result<()> {
    let bin = cargo_home()?.join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if !dirs.contains(&bin) {
        dirs.insert(0, bin);
        let joined = env::join_paths(dirs).context("building PATH")?;
        // Single-threaded at this point.
        env::set_var("PATH", joined);
    }
    Ok(())
}

/// `cargo` run from the workspace root.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    cmd
}

fn effective_uid() -> Result<u32> {
    // /proc/self is owned by the process's effective uid.
    Ok(fs::metadata("/proc/self")
        .context("reading /proc/self to find the effective uid")?
        .uid())
}

fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn print_cmd(cmd: &Command) {
    eprintln!("$ {}", describe(cmd));
}

/// Run `cmd` (inheriting stdio); error unless it exits 0.
fn run_ok(cmd: &mut Command) -> Result<()> {
    print_cmd(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("starting `{}`", describe(cmd)))?;
    ensure!(status.success(), "`{}` failed ({status})", describe(cmd));
    Ok(())
}

/// Run `cmd` and return its stdout; error unless it exits 0.
fn output_of(cmd: &mut Command) -> Result<String> {
    print_cmd(cmd);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting `{}`", describe(cmd)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({})",
        describe(cmd),
        out.status
    );
    String::from_utf8(out.stdout)
        .with_context(|| format!("non-UTF-8 output of `{}`", describe(cmd)))
}
